"""SMS segment arithmetic: how many billable parts a body becomes on the handset.

GSM-7 packs 160 septets into one segment (153 once concatenated, the rest is the UDH header);
characters of the extension table cost two septets. Any character outside GSM-7 switches the whole
message to UCS-2: 70 UTF-16 code units per segment, 67 once concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import BreachError

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

#: Twilio rejects bodies longer than this (error 21617).
MAX_BODY_CHARS = 1600


class SmsTooLong(BreachError):
    """The SMS body is longer than Twilio accepts."""


@dataclass(frozen=True)
class Segments:
    """The encoding a body needs and how many segments it is split into."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int


def count_segments(text: str) -> Segments:
    """Segments of ``text`` as a carrier counts them."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text):
        units = sum(2 if ch in _GSM_EXTENSION else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return Segments(encoding, units, 1 if units else 0)
    return Segments(encoding, units, -(-units // multi))
