"""Structured logging for the whole project, with personal data masked and secrets redacted.

Code logs events with fields through the standard library::

    log = logging.getLogger(__name__)
    log.warning("delivery failed", extra={"delivery": 42, "to": "+14155550101", "attempt": 3})

and :func:`configure` (called once by the command line) decides how they are printed:

- JSON, one object per line: ``ts``, ``level``, ``logger``, ``event`` (the message) and every
  ``extra`` field (one that would overwrite those four is renamed ``extra_<name>``; names that
  start with ``_`` are private to handlers and left out);
- plain text: ``<ts> <LEVEL> <logger>: <event> key=value ...``.

Whatever the format, before anything is written:

- phone numbers and e-mail addresses are masked in the message, in the exception text and in
  every extra field, nested dicts and lists included (:func:`mask_text`). Fields whose name says
  they hold a contact (``to``, ``phone``, ``email``, ``push_token``, ...) are masked whole with
  :func:`mask_recipient`, whatever they look like;
- the values of secret settings passed to :func:`register_secret` become ``***``.

Masking is a last line of defence, not a licence to log people: it recognises the common written
forms, not every form. What is and is not read as a phone number in free text:

- ``+`` (or ``%2B``) followed by 7 to 15 digits, with single spaces, dashes, dots or parentheses
  between them: always a phone number;
- digits in groups separated that way, 7 to 15 in all (``(415) 555-0101``, ``020 7946 0958``):
  a phone number, unless the text is a date (``2026-11-25``, ``25.11.2026``), an IPv4 address or
  a decimal number;
- a bare run of 7 to 15 digits: a phone number only if it starts with a trunk ``0`` or the
  international ``00`` (``0612345678``); otherwise it is a count, an epoch time or an id, and the
  engine logs recipients in E.164 (with ``+``) anyway;
- digits glued to letters, or following ``-``, ``.``, ``/``, ``:`` or ``#`` (UUIDs, incident ids
  like ``INC-20261125-ab12cd``, times, versions, paths) are never phone numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import sys
import threading
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final, TextIO
from urllib.parse import quote

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

__all__ = [
    "JsonFormatter",
    "PlainFormatter",
    "clear_secrets",
    "configure",
    "mask_email",
    "mask_phone",
    "mask_recipient",
    "mask_text",
    "redact_secrets",
    "register_secret",
]

PHONE_MASK: Final = "*******"
EMAIL_MASK: Final = "***"
SECRET_MASK: Final = "***"
# Shorter values cannot be told from ordinary words and numbers; redacting "test" or "1234"
# everywhere would wreck the logs without protecting anything worth the name.
MIN_SECRET_LENGTH: Final = 4

# Field names whose values are contacts, whatever their shape (a bare national number, a push
# token): masked whole. Compared case-insensitively.
RECIPIENT_FIELDS: Final = frozenset(
    {
        "to",
        "recipient",
        "recipients",
        "address",
        "contact",
        "phone",
        "phone_number",
        "mobile",
        "msisdn",
        "email",
        "email_address",
        "push_token",
        "device_token",
        "fcm_token",
        "token",
    }
)

_COUNTRY_CODES = frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)

# The local part leaves out the rarer characters RFC 5322 allows ("=", "/", "'", "&", "*") so
# that "to=alice@..." or "'alice@...'" keeps its "to=" and quote; "%40" is an URL-encoded "@".
_EMAIL = re.compile(r"([\w.!#$%+^`{|}~-]+)(@|%40)((?:[\w-]+\.)+[\w-]*[A-Za-z][\w-]*)")

# A candidate phone number in free text: an optional international prefix, then digits with at
# most one separator (or a parenthesis pair) between them. The digit run is possessive, so a
# candidate that ends glued to something (a "T" in a timestamp, a "-" in a UUID) is rejected as a
# whole instead of being shortened until it fits.
_SEPARATOR = r"(?:[ .\-]|\)[ .\-]?|[ \-]?\()"
_PHONE = re.compile(
    r"(?:(?<![\w+])\(?(?P<intl>\+|%2[Bb])|(?<![\w+/.:#@\-]))"
    r"\(?\d(?:" + _SEPARATOR + r"?\d)*+"
    r"(?![\w\-/:@+]|\.\d)"
)
_DATE = re.compile(
    r"(?<!\d)(?:\d{4}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./]\d{4})(?!\d)"
)
_IPV4_OR_DECIMAL = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d+\.\d+")
_PHONE_VALUE = re.compile(r"(?:\+|%2[Bb])?[\d\s().\-]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.+)")
_NON_PERSONAL_SCHEMES = frozenset({"topic", "condition"})

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


# -- masking ---------------------------------------------------------------------------------


def _country_code(digits: str) -> str:
    # Calling codes are a prefix code (no code starts another), so the first match is the one.
    for size in (1, 2, 3):
        if digits[:size] in _COUNTRY_CODES:
            return digits[:size]
    return ""


def _phone_digits(text: str) -> tuple[bool, str]:
    """(international?, the digits after any ``+``, ``%2B`` or ``00`` prefix)."""
    text = text.strip().lstrip("(")
    international = text.startswith("+") or text[:3].upper() == "%2B"
    if text.startswith("%"):
        text = text[3:]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    return international, digits


def mask_phone(number: str) -> str:
    """``+14155550101`` -> ``+1*******01``: the country code and the last two digits stay.

    The middle is always seven stars, so the masked form reveals neither digits nor length.
    National numbers (no ``+`` or ``00``) keep only their last two digits; anything with fewer
    than five digits becomes ``*******``.
    """
    international, digits = _phone_digits(number)
    if len(digits) < 5:
        return PHONE_MASK
    if not international:
        return PHONE_MASK + digits[-2:]
    return "+" + _country_code(digits) + PHONE_MASK + digits[-2:]


def mask_email(address: str) -> str:
    """``alice@example.org`` -> ``a***@example.org``: the first character and the domain stay."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return EMAIL_MASK
    return local[:1] + EMAIL_MASK + "@" + domain


def _phone_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if not 7 <= len(_phone_digits(text)[1]) <= 15:
        return text
    if match.group("intl"):
        is_phone = True
    elif text.isdigit():
        # A bare run is a count, an epoch or an id unless a trunk or international prefix says
        # otherwise; "000..." is zero padding, as no country code starts with 0.
        is_phone = text.startswith("0") and not text.startswith("000")
    else:
        is_phone = not (_DATE.search(text) or _IPV4_OR_DECIMAL.fullmatch(text))
    if not is_phone:
        return text
    # "(+14155550101)": the "(" was taken as part of a "(+44) 20 ..." prefix; give it back.
    unbalanced = text.startswith("(") and text.count("(") > text.count(")")
    return ("(" if unbalanced else "") + mask_phone(text)


def mask_text(text: str) -> str:
    """Mask every e-mail address and phone number in free text, and redact registered secrets.

    Timestamps, UUIDs, incident ids and counts are left alone; see the module documentation for
    exactly what is read as a phone number.
    """
    text = redact_secrets(text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(lambda m: m.group(1)[:1] + EMAIL_MASK + m.group(2) + m.group(3), text)
    return _PHONE.sub(_phone_match, text)


def mask_recipient(value: str) -> str:
    """Mask a contact of any kind, as shown wherever the orchestrator shows recipients.

    E-mail addresses and phone numbers as :func:`mask_email` and :func:`mask_phone` (a scheme
    such as ``whatsapp:`` stays in front); FCM ``topic:``/``condition:`` targets are not personal
    and stay whole; anything else (a push token) keeps its first six characters when long enough
    to stay unguessable, and becomes ``***`` otherwise.
    """
    text = redact_secrets(value.strip())
    if found := _SCHEME.fullmatch(text):
        scheme, rest = found.group(1), found.group(2)
        if scheme.lower() in _NON_PERSONAL_SCHEMES:
            return text
        if "@" in rest or _is_phone_value(rest):
            return scheme + ":" + mask_recipient(rest)
    if "@" in text:
        return mask_email(text)
    if _is_phone_value(text):
        return mask_phone(text)
    return text[:6] + "***" if len(text) > 8 else "***"


def _is_phone_value(text: str) -> bool:
    return bool(_PHONE_VALUE.fullmatch(text)) and sum(ch.isdigit() for ch in text) >= 6


# -- secrets ---------------------------------------------------------------------------------


def register_secret(value: str | None) -> None:
    """Redact ``value`` (an API key, a token, a password) as ``***`` in all log output from now on.

    Its URL-encoded form is redacted too, as secrets travel in query strings. Empty values and
    values shorter than :data:`MIN_SECRET_LENGTH` characters are not registered.
    """
    global _secret_pattern
    if value is None:
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe="")})
        # Longest first, so a secret that contains another is redacted whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def clear_secrets() -> None:
    """Forget every registered secret (for tests, and a process that reloads its settings)."""
    global _secret_pattern
    with _secrets_lock:
        _secrets.clear()
        _secret_pattern = None


def redact_secrets(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _secret_pattern
    return pattern.sub(SECRET_MASK, text) if pattern is not None else text


# -- formatting ------------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_BASE_FIELDS = ("ts", "level", "logger", "event")
_MAX_DEPTH = 12


def _timestamp(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _clean(value: Any, recipient: bool = False, depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with personal data masked and secrets redacted."""
    if depth > _MAX_DEPTH:
        return "…"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return mask_recipient(value) if recipient else mask_text(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Enum):
        return _clean(value.value, recipient, depth + 1)
    if isinstance(value, Mapping):
        return {
            mask_text(str(key)): _clean(item, _is_recipient_field(key), depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, recipient, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    return mask_recipient(text) if recipient else mask_text(text)


def _is_recipient_field(name: object) -> bool:
    return isinstance(name, str) and name.lower() in RECIPIENT_FIELDS


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record, cleaned."""
    return {
        key: _clean(value, _is_recipient_field(key))
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event`` and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, masked and redacted."""
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": mask_text(record.getMessage()),
        }
        for key, value in _fields(record).items():
            payload[f"extra_{key}" if key in _BASE_FIELDS else mask_text(key)] = value
        if record.exc_info:
            payload["exc"] = mask_text(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = mask_text(self.formatStack(record.stack_info))
        # Everything was cleaned field by field; this catches a secret split across fields' edges.
        return redact_secrets(json.dumps(payload, ensure_ascii=False))


def _plain_value(value: Any) -> str:
    if isinstance(value, str):
        if value and not any(ch.isspace() or ch in "\"'=" for ch in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class PlainFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <event> key=value ...``, for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of text (plus the traceback, if any), masked and redacted."""
        parts = [
            _timestamp(record.created),
            record.levelname,
            f"{record.name}:",
            mask_text(record.getMessage()),
        ]
        parts += [f"{mask_text(k)}={_plain_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + mask_text(self.formatStack(record.stack_info))
        return redact_secrets(line)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure` installs, told apart from handlers others installed."""


#: the loggers of this project and of the plugins it loaded; every other logger is a library's
_OURS: set[str] = {"orchestrator"}
_our_level: int | None = None


def adopt(name: str) -> None:
    """Log ``name`` (a plugin's package) at the project's level rather than the libraries'."""
    _OURS.add(name)
    if _our_level is not None:
        logging.getLogger(name).setLevel(_our_level)


def _level(name: str) -> int:
    number = logging.getLevelNamesMapping().get(name.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {name!r}")
    return number


def configure(
    json: bool = False,
    level: str = "INFO",
    stream: TextIO | None = None,
    libraries: str = "WARNING",
) -> None:
    """Send all logging (the project's, plugins', libraries') to ``stream`` in one format.

    ``json`` picks JSON lines over plain text; ``level`` is a level name (``"debug"`` works too)
    for the project and its plugins; ``libraries`` is the level of every other logger (SDKs,
    HTTP clients, the database): quiet by default, because a provider SDK narrating each request
    at INFO costs more than the request. ``stream`` defaults to the current ``sys.stderr``.
    Calling it again replaces the handler it installed before; handlers installed by others (a
    test's log capture) are left alone.
    """
    global _our_level
    number = _level(level)
    library_number = _level(libraries)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else PlainFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries inherit the root's level, so their records below it are never even created.
    root.setLevel(library_number)
    _our_level = number
    for name in _OURS:
        logging.getLogger(name).setLevel(number)
