"""The error text of a receipt: personal contacts masked, one line, cut short.

Providers quote what they refused ("Invalid 'To' Phone Number: +1500...", a bounce naming the
address). Receipts end up in the ledger, logs, status tables and reports, which must not hold
full personal contacts, so a notifier passes every provider text through :func:`mask_reason`
before it becomes a receipt's ``error`` or a receipt update's ``reason``.

Phone numbers keep their first and last two digits (``+15…01``) and e-mail addresses their
first character and domain (``a…@example.com``): enough for an operator to tell two failures
apart. Log lines are masked again, in their own format, by :mod:`orchestrator.logs`.
"""

from __future__ import annotations

import re
from typing import Final

from ..limits import shortened

__all__ = ["MAX_REASON", "mask_reason"]

#: The longest error text kept in a receipt: enough to act on, short enough for a status table.
MAX_REASON: Final = 300

# Digits with the separators people type; masked from 9 digits on, so SMTP status codes
# ("550 5.1.1"), dates and error codes stay readable.
_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_PHONE_MIN_DIGITS = 9
_EMAIL = re.compile(r"([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < _PHONE_MIN_DIGITS:
        return match.group(0)
    plus = "+" if match.group(0).startswith("+") else ""
    return f"{plus}{digits[:2]}…{digits[-2:]}"


def mask_reason(text: str) -> str:
    """``text`` with phone numbers and e-mail addresses masked, on one line, cut to
    :data:`MAX_REASON` characters."""
    masked = _EMAIL.sub(r"\1…@\2", _PHONE.sub(_phone, text))
    masked = " ".join(masked.split())
    return shortened(masked, MAX_REASON)
