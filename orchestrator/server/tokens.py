"""Commander API tokens: made at random, kept in the config as their SHA-256, checked in
constant time. A token is 32 random bytes, so a plain hash is as strong as a slow one here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from ..errors import BreachError
from .config import ApiToken

__all__ = ["PREFIX", "digest", "find", "new_token"]

#: tokens start with this, so a secret scanner recognises one in a log or a commit
PREFIX = "brc_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def digest(value: str) -> bytes:
    """The SHA-256 of a token's value."""
    return hashlib.sha256(value.encode("utf-8")).digest()


def new_token(name: str, roles: list[str]) -> tuple[str, str]:
    """A new token and its ``[[api.tokens]]`` entry for ``breach.toml``."""
    for word in (name, *roles):
        if not _NAME.match(word):
            raise BreachError(f"{word!r}: use lower-case letters, digits, - and _ (name, roles)")
    value = PREFIX + secrets.token_urlsafe(32)
    listed = ", ".join(f'"{r}"' for r in dict.fromkeys(roles))
    entry = (f'[[api.tokens]]\nname = "{name}"\nroles = [{listed}]\n'
             f'sha256 = "{digest(value).hex()}"')  # fmt: skip
    return value, entry


def find(tokens: Iterable[ApiToken], value: str) -> ApiToken | None:
    """The configured token whose hash matches ``value`` (every one compared: constant time)."""
    wanted = digest(value)
    found = None
    for token in tokens:
        if hmac.compare_digest(token.digest, wanted):
            found = token
    return found
