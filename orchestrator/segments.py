"""How many SMS segments a text costs, exactly as a carrier counts them.

A message whose every character is in the GSM 03.38 (3GPP TS 23.038) default alphabet is sent in
GSM-7: 160 septets fit in one SMS; a longer text is split into concatenated parts of 153 septets
each (the user-data header takes the other 7). Characters of the extension table (``^ { } \\ [ ~ ]
| €`` and form feed) are sent as ESC plus one septet, so they cost 2, and the pair is never split
across two parts.

Any other character switches the whole message to UCS-2 (UTF-16 on the air): 70 code units fit in
one SMS, 67 per concatenated part. A character outside the Basic Multilingual Plane (most emoji)
is a surrogate pair of 2 units, and a pair is never split across two parts. Grapheme clusters
(an emoji with a skin-tone modifier, a ZWJ family) may be split between parts: handsets reassemble
the parts before display, so carriers split only at code-unit boundaries and so do we.

The empty text counts as one segment of zero units: that is how carriers bill it (one SMS with an
empty payload). Providers may still refuse an empty body (Twilio answers error 21602).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "SegmentCount",
    "count_segments",
    "is_gsm7",
    "non_gsm7_characters",
    "split_segments",
]

Encoding = Literal["GSM-7", "UCS-2"]

#: The GSM 03.38 default alphabet, in code order 0x00-0x7F. ESC (0x1B) is not a character: it
#: introduces the extension table. 0x09 is capital Ç; lowercase ç is not in the alphabet.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ"  # 0x10-0x1A; 0x1B is ESC
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: Characters reached through ESC: each costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE = 160
_GSM7_MULTI = 153
_UCS2_SINGLE = 70
_UCS2_MULTI = 67


@dataclass(frozen=True)
class SegmentCount:
    """The cost of one text as SMS.

    ``units`` are septets (GSM-7) or UTF-16 code units (UCS-2); ``chars_per_segment`` is the
    capacity of one segment in those units for this message (160/153 or 70/67) and ``remaining``
    how many units still fit in the last segment.
    """

    encoding: Encoding
    units: int
    segments: int
    chars_per_segment: int
    remaining: int


def is_gsm7(text: str) -> bool:
    """True when the text can be sent in GSM-7 (basic alphabet plus extension table)."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def non_gsm7_characters(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    seen: dict[str, None] = {}
    for c in text:
        if c not in GSM7_BASIC and c not in GSM7_EXTENSION:
            seen.setdefault(c, None)
    return list(seen)


def _unit_costs(text: str) -> tuple[Encoding, list[int]]:
    if is_gsm7(text):
        return "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in text]
    # Python strings hold code points; a code point above the BMP is two UTF-16 units.
    return "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in text]


def _pack(costs: list[int], capacity: int) -> list[tuple[int, int, int]]:
    """Greedy split into ``(start, end, units)`` parts; a 2-unit character is never split."""
    parts: list[tuple[int, int, int]] = []
    start, used = 0, 0
    for i, cost in enumerate(costs):
        if used + cost > capacity:
            parts.append((start, i, used))
            start, used = i, 0
        used += cost
    parts.append((start, len(costs), used))
    return parts


def _layout(text: str) -> tuple[Encoding, int, int, list[tuple[int, int, int]]]:
    encoding, costs = _unit_costs(text)
    units = sum(costs)
    single, multi = (
        (_GSM7_SINGLE, _GSM7_MULTI) if encoding == "GSM-7" else (_UCS2_SINGLE, _UCS2_MULTI)
    )
    if units <= single:
        return encoding, units, single, [(0, len(text), units)]
    return encoding, units, multi, _pack(costs, multi)


def count_segments(text: str) -> SegmentCount:
    """Count the SMS segments ``text`` is billed as (see the module docstring for the rules)."""
    encoding, units, capacity, parts = _layout(text)
    return SegmentCount(
        encoding=encoding,
        units=units,
        segments=len(parts),
        chars_per_segment=capacity,
        remaining=capacity - parts[-1][2],
    )


def split_segments(text: str) -> list[str]:
    """The text of each segment, split where a carrier splits it (``[""]`` for the empty text)."""
    _, _, _, parts = _layout(text)
    return [text[start:end] for start, end, _ in parts]
