"""The audience: the affected people, streamed from a source, never loaded whole.

A source yields :class:`Recipient` rows. Contact fields are normalised on the way in (E.164 phone
numbers, syntactically valid e-mail addresses); a value that fails is not dropped but recorded in
``Recipient.invalid`` so every step can report the person as skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

CONTACT_FIELDS = ("phone", "email", "push_token")
_LABELS = {"phone": "phone number", "email": "e-mail address", "push_token": "push token"}


@dataclass(slots=True)
class Recipient:
    """One affected person. ``row`` is the 1-based position in the source, for error messages."""

    id: str
    row: int = 0
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    locale: str | None = None
    region: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: contact field -> reason it was rejected, e.g. {"phone": "invalid phone number"}
    invalid: dict[str, str] = field(default_factory=dict)

    def address(self, contact: str) -> tuple[str | None, str | None]:
        """(address, None) when reachable on ``contact``, else (None, reason it is not)."""
        if contact in self.invalid:
            return None, self.invalid[contact]
        value = getattr(self, contact)
        if not value:
            return None, f"no {_LABELS.get(contact, contact)}"
        return value, None


@runtime_checkable
class AudienceSource(Protocol):
    """An iterable of recipients that can be read more than once (once per step)."""

    description: str

    def __iter__(self) -> Iterator[Recipient]: ...


class AudienceSourceFactory(Protocol):
    """Opens a source from its target (a path or URL) and options (e.g. ``query``, ``params``)."""

    def __call__(self, target: str, options: Mapping[str, Any]) -> AudienceSource: ...
