"""Masking of phone numbers and e-mail addresses in text that leaves the plugin.

FCM error messages quote what the API returned; they are cut short and masked all the same.
Receipts end up in the ledger, logs and reports, which must not hold full personal contacts.
"""

from __future__ import annotations

import re

# Digits with the separators people type; masked from 9 digits on, so SMTP status codes
# ("550 5.1.1"), dates and error codes stay readable.
_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_PHONE_MIN_DIGITS = 9
_EMAIL = re.compile(r"([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")

#: The longest error text kept in a receipt: enough to act on, short enough for a status table.
MAX_REASON = 300


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < _PHONE_MIN_DIGITS:
        return match.group(0)
    plus = "+" if match.group(0).startswith("+") else ""
    return f"{plus}{digits[:2]}…{digits[-2:]}"


def redact(text: str) -> str:
    """``text`` with phone numbers and e-mail addresses masked, cut to :data:`MAX_REASON`."""
    masked = _EMAIL.sub(r"\1…@\2", _PHONE.sub(_phone, text))
    masked = " ".join(masked.split())
    return masked if len(masked) <= MAX_REASON else masked[: MAX_REASON - 1] + "…"
