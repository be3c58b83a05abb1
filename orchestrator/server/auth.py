"""Webhook authentication: Alertmanager's bearer or basic credentials, signed generic JSON,
Grafana's HMAC signature header.

Secrets are compared in constant time (digests of equal length, ``hmac.compare_digest``). The
generic webhook's signature is HMAC-SHA256 over ``timestamp + "." + body``, sent as::

    X-Breach-Timestamp: 1767254400              (Unix seconds)
    X-Breach-Signature: sha256=<64 hex digits>

A timestamp more than five minutes from the server clock is refused, and a signature is
accepted once within that window (the replay cache lives in this process).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
import threading
import time
from collections.abc import Mapping

from ..errors import BreachError
from .config import AlertmanagerCredentials, GrafanaCredentials, Secret

TIMESTAMP_HEADER = "X-Breach-Timestamp"
SIGNATURE_HEADER = "X-Breach-Signature"
#: how far a timestamp may be from the server clock, and how long a signature is remembered
WINDOW_SECONDS = 300
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class Unauthorized(BreachError):
    """Missing or wrong credentials or signature (HTTP 401)."""

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class Replayed(BreachError):
    """A signature already accepted within the window (HTTP 409)."""


_DECIMAL = re.compile(r"[0-9]+")


def decimal(text: str, *, max_digits: int) -> int | None:
    """A header's non-negative whole number, or None. Only ASCII digits count: ``str.isdigit``
    also accepts "¹²", which ``int()`` then refuses."""
    text = text.strip()
    if len(text) > max_digits or not _DECIMAL.fullmatch(text):
        return None
    return int(text)


def _same(given: bytes, expected: bytes) -> bool:
    # equal-length digests: the comparison time says nothing about the secret's length
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def check_alertmanager(authorization: str | None, creds: AlertmanagerCredentials | None) -> str:
    """Accept the ``Authorization`` header Alertmanager's ``http_config`` sends; return the
    scheme used. Raise :class:`Unauthorized` otherwise."""
    if creds is None:
        raise Unauthorized("this server has no [auth.alertmanager] credentials configured, so "
                           "it accepts no Alertmanager notifications")  # fmt: skip
    challenge = 'Bearer realm="breach"' if creds.token else 'Basic realm="breach"'
    if not authorization:
        raise Unauthorized("missing Authorization header: set http_config.authorization "
                           "(or basic_auth) on the Alertmanager receiver", challenge)  # fmt: skip
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and creds.token is not None:
        if value and _same(value.encode("utf-8"), creds.token.reveal()):
            return "bearer"
        raise Unauthorized("wrong bearer token", challenge)
    if scheme.lower() == "basic" and creds.username is not None and creds.password is not None:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed basic credentials", challenge) from None
        user, sep, password = decoded.partition(":")
        # both compared, always, so timing does not tell which one was wrong
        user_ok = _same(user.encode("utf-8"), creds.username.encode("utf-8"))
        password_ok = _same(password.encode("utf-8"), creds.password.reveal())
        if sep and user_ok & password_ok:
            return "basic"
        raise Unauthorized("wrong basic-auth username or password", challenge)
    accepted = " or ".join(
        s
        for s, ok in (("Bearer", creds.token is not None), ("Basic", creds.password is not None))
        if ok
    )
    raise Unauthorized(f"unsupported Authorization scheme {scheme[:20]!r}; this server accepts "
                       f"{accepted}", challenge)  # fmt: skip


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Breach-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_signature(
    headers: Mapping[str, str], body: bytes, secret: Secret | None, *, now: float | None = None
) -> tuple[str, int]:
    """Verify a generic webhook's signature; return (signature hex, timestamp).

    Raise :class:`Unauthorized` for a missing, stale or wrong signature.
    """
    if secret is None:
        raise Unauthorized("this server has no [auth.generic] secret configured, so it "
                           "accepts no generic webhooks")  # fmt: skip
    stamp = headers.get(TIMESTAMP_HEADER.lower())
    signature = headers.get(SIGNATURE_HEADER.lower())
    if not stamp or not signature:
        missing = [h for h, v in ((TIMESTAMP_HEADER, stamp), (SIGNATURE_HEADER, signature))
                   if not v]  # fmt: skip
        raise Unauthorized(f"missing {' and '.join(missing)} header(s); see the README, "
                           "section Webhooks, for how to sign a request")  # fmt: skip
    timestamp = decimal(stamp, max_digits=12)
    if timestamp is None:
        raise Unauthorized(f"{TIMESTAMP_HEADER} must be Unix time in whole seconds")
    current = time.time() if now is None else now
    skew = current - timestamp
    if abs(skew) > WINDOW_SECONDS:
        direction = "old" if skew > 0 else "in the future"
        raise Unauthorized(f"{TIMESTAMP_HEADER} is {abs(int(skew))} s {direction} (limit "
                           f"{WINDOW_SECONDS} s): sign each request when it is sent, and check "
                           "the sender's clock")  # fmt: skip
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        raise Unauthorized(f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
    given = match.group(1).lower()
    expected = sign(secret.reveal(), stamp.strip(), body)[len("sha256=") :]
    if not hmac.compare_digest(given, expected):
        raise Unauthorized("signature does not match: HMAC-SHA256 with the shared secret over "
                           "timestamp + \".\" + the exact body bytes")  # fmt: skip
    return given, timestamp


def grafana_signature(secret: bytes, body: bytes, timestamp: int | str | None = None) -> str:
    """What Grafana sends in its signature header: hex HMAC-SHA256 of the body, or of
    ``timestamp + ":" + body`` when its contact point has a timestamp header configured."""
    signed = body if timestamp is None else str(timestamp).encode("ascii") + b":" + body
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def check_grafana(
    headers: Mapping[str, str],
    body: bytes,
    creds: GrafanaCredentials | None,
    *,
    now: float | None = None,
) -> None:
    """Verify a Grafana webhook's HMAC signature (and timestamp, when configured); raise
    :class:`Unauthorized` for a missing, stale or wrong one. ``headers`` have lower-case names."""
    if creds is None:
        raise Unauthorized("this server has no [auth.grafana] secret configured, so it accepts "
                           "no Grafana notifications")  # fmt: skip
    signature = headers.get(creds.signature_header.lower(), "").strip().lower()
    signature = signature.removeprefix("sha256=")
    if not signature:
        raise Unauthorized(f"missing {creds.signature_header} header: set the contact point's "
                           "HMAC signature secret in Grafana")  # fmt: skip
    stamp: str | None = None
    if creds.timestamp_header is not None:
        stamp = headers.get(creds.timestamp_header.lower(), "").strip()
        timestamp = decimal(stamp, max_digits=12) if stamp else None
        if timestamp is None:
            raise Unauthorized(f"{creds.timestamp_header} must be Unix time in whole seconds "
                               "(the contact point's timestamp header)")  # fmt: skip
        skew = (time.time() if now is None else now) - timestamp
        if abs(skew) > WINDOW_SECONDS:
            raise Unauthorized(f"{creds.timestamp_header} is {abs(int(skew))} s away from this "
                               f"server's clock (limit {WINDOW_SECONDS} s)")  # fmt: skip
    expected = grafana_signature(creds.secret.reveal(), body, stamp)
    if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode("ascii")):
        raise Unauthorized("signature does not match: HMAC-SHA256 with the contact point's "
                           "secret over the exact body (timestamp + \":\" + body when a "
                           "timestamp header is configured)")  # fmt: skip


class ReplayCache:
    """Signatures accepted within the window, in this process's memory.

    A signature is reserved when its request is authenticated and released again if the
    request is not carried out, so a sender may retry the same signed request after a refusal
    or a server error, but never replay one that took effect.
    """

    def __init__(self, window: int = WINDOW_SECONDS) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def reserve(self, signature: str, timestamp: int, *, now: float | None = None) -> None:
        """Remember ``signature``; raise :class:`Replayed` if it is already remembered."""
        current = time.time() if now is None else now
        with self._lock:
            while self._expiry and self._expiry[0][0] < current:
                expires, old = heapq.heappop(self._expiry)
                if self._seen.get(old) == expires:
                    del self._seen[old]
            if signature in self._seen:
                raise Replayed("this signed request was already received; sign every request "
                               "afresh (new timestamp) to send it again")  # fmt: skip
            # remembered while its timestamp is still acceptable, whichever way the clock skews
            expires = max(current, timestamp) + self.window
            self._seen[signature] = expires
            heapq.heappush(self._expiry, (expires, signature))

    def release(self, signature: str) -> None:
        """Forget ``signature`` (its request was refused or failed, so it may be retried)."""
        with self._lock:
            self._seen.pop(signature, None)

    def __len__(self) -> int:
        return len(self._seen)
