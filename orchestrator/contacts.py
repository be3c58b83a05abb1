"""Contact normalisation: raw audience fields in, a :class:`~orchestrator.audience.Recipient` out.

Every source (CSV, JSONL, SQL, a plugin's) hands its raw values to :func:`build_recipient`, so a
person reads the same whichever source they came from:

- phone numbers become E.164 (``+819012345678``); a number without ``+`` is read in the row's
  ``region`` (ISO 3166 alpha-2, or the country of an ISO 3166-2 subdivision such as ``US-CA``)
  and is invalid without one;
- e-mail addresses are checked for syntax only (no DNS) and kept in normalised form;
- push tokens are stripped and checked for a sane length and character set;
- locales become BCP 47 tags (``EN_us`` -> ``en-US``); regions become upper case.

A value that fails is not dropped: the field is left empty and ``Recipient.invalid`` records a
short reason, which never repeats the value itself (it is personal data).

Audiences run to millions of rows and are read once per step, so the common shapes take fast
paths that give the libraries' own answers (the tests hold them to it):

- an E.164 string is checked against phonenumbers' metadata directly (about 2 µs) instead of
  ``parse`` + ``is_valid_number`` (about 15 µs); other input goes through ``parse``;
- an ASCII dot-atom address has its domain validated once by email-validator and cached (about
  1 µs instead of 19 µs per address); anything else goes through ``validate_email``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from phonenumbers.phonemetadata import PhoneMetadata

from .audience import CONTACT_FIELDS, Recipient
from .limits import MAX_CONTACT_CHARS, MAX_RECIPIENT_ID

INVALID_PHONE = "invalid phone number"
INVALID_EMAIL = "invalid e-mail address"
INVALID_PUSH = "invalid push token"

# -- phone ---------------------------------------------------------------------------------

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# The number types phonenumbers tells apart; a number is valid when its region's general pattern
# and one of these match (phonenumberutil._number_type_helper). Any match will do, so the types
# most numbers are come first: a fifth less time per number than phonenumbers' own order.
_NUMBER_TYPES = (
    "mobile",
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)

_Desc = tuple[frozenset[int], Callable[[str], object]]


@dataclass(frozen=True, slots=True)
class _RegionRule:
    leading_digits: Callable[[str], object] | None
    general: _Desc
    types: tuple[_Desc, ...]

    def valid(self, nsn: str) -> bool:
        return _matches(nsn, self.general) and any(_matches(nsn, d) for d in self.types)


def _matches(nsn: str, desc: _Desc) -> bool:
    lengths, fullmatch = desc
    return (not lengths or len(nsn) in lengths) and fullmatch(nsn) is not None


def _desc(desc: Any) -> _Desc | None:
    if desc is None or desc.national_number_pattern is None:
        return None
    return frozenset(desc.possible_length), re.compile(desc.national_number_pattern).fullmatch


@dataclass(frozen=True, slots=True)
class _Country:
    #: parse() strips or rewrites a national prefix matching this even after "+CC"
    national_prefix: Callable[[str], object] | None
    regions: tuple[_RegionRule, ...]


_countries: dict[int, _Country] = {}


def _country(country_code: int) -> _Country:
    country = _countries.get(country_code)
    if country is None:
        regions: list[_RegionRule] = []
        main = PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, phonenumbers.region_code_for_country_code(country_code)
        )
        prefix = None  # parse() uses the main region's national prefix rule
        if main is not None and main.national_prefix_for_parsing:
            prefix = re.compile(main.national_prefix_for_parsing).match
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
            general = _desc(meta.general_desc) if meta is not None else None
            if meta is None or general is None:
                continue
            types = tuple(d for t in _NUMBER_TYPES if (d := _desc(getattr(meta, t))) is not None)
            leading = re.compile(meta.leading_digits).match if meta.leading_digits else None
            regions.append(_RegionRule(leading, general, types))
        country = _countries[country_code] = _Country(prefix, tuple(regions))
    return country


def _e164_valid(digits: str) -> bool | None:
    """Validity of ``+digits`` as phonenumbers would judge it; None when only ``parse`` can tell.

    Mirrors ``region_code_for_number`` + ``is_valid_number_for_region``. Numbers whose national
    part starts with 0 or with a national prefix go to ``parse``, which rewrites those.
    """
    for size in (1, 2, 3):
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            nsn = digits[size:]
            country = _country(country_code)
            if nsn.startswith("0") or (country.national_prefix and country.national_prefix(nsn)):
                return None
            regions = country.regions
            if len(regions) == 1:
                return regions[0].valid(nsn)
            for rule in regions:  # shared country code (NANP, +7, +44...): find the region first
                if rule.leading_digits is not None:
                    if rule.leading_digits(nsn):
                        return rule.valid(nsn)
                elif rule.valid(nsn):
                    return True
            return False
    return False


def normalise_phone(value: str, region: str | None = None) -> str | None:
    """The number in E.164, or None when it is not a valid number.

    Without a leading ``+`` the number is read as dialled in ``region`` (e.g. ``"JP"``); with
    neither it is invalid, since guessing a country would text the wrong person.
    """
    text = value.strip()
    if _E164.fullmatch(text):
        valid = _e164_valid(text[1:])
        if valid is not None:
            return text if valid else None
    elif not text.startswith("+") and not region:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


# -- e-mail --------------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+"
_ASCII_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_ROLE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # lower-cased by the library
_EMAIL_MAX = 254


@functools.lru_cache(maxsize=8192)
def _email_domain(domain: str) -> str | None:
    """The normalised domain, validated once per distinct domain (audiences share few)."""
    try:
        return str(validate_email("x@" + domain, check_deliverability=False).domain)
    except EmailNotValidError:
        return None


def normalise_email(value: str) -> str | None:
    """The address in email-validator's normalised form, or None when its syntax is invalid.

    Deliverability (DNS) is not checked: a million look-ups would take hours, and a bounce is
    reported by the provider anyway.
    """
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if (
        at
        and domain.isascii()
        and _ASCII_LOCAL.fullmatch(local)
        and local.lower() not in _ROLE_MAILBOXES
    ):
        normal_domain = _email_domain(domain)
        if normal_domain is not None and len(local) + 1 + len(normal_domain) <= _EMAIL_MAX:
            return f"{local}@{normal_domain}"
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


# -- push, locale, region, name ------------------------------------------------------------

# FCM (base64url with ':'), APNs (hex), Expo ("ExponentPushToken[...]"), base64 in general.
# FCM's tokens are about 160 characters; the ledger keeps a contact of up to MAX_CONTACT_CHARS
_PUSH_TOKEN = re.compile(rf"[A-Za-z0-9_\-:.=+/\[\]]{{8,{MAX_CONTACT_CHARS}}}")


def normalise_push_token(value: str) -> str | None:
    """The token without surrounding whitespace, or None when it cannot be a device token."""
    text = value.strip()
    return text if _PUSH_TOKEN.fullmatch(text) else None


# language, optional script, optional region; "_" as in POSIX locales; ".UTF-8"/"@euro" ignored
_LOCALE = re.compile(
    r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?(?:[.@].*)?"
)


@functools.lru_cache(maxsize=1024)
def normalise_locale(value: str) -> str | None:
    """A BCP 47 tag: ``"EN_us"`` -> ``"en-US"``, ``"zh_hant_tw"`` -> ``"zh-Hant-TW"``.

    None when the value is not a language tag; the step then uses the playbook's default locale.
    """
    match = _LOCALE.fullmatch(value.strip())
    if match is None:
        return None
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def normalise_region(value: str) -> str | None:
    """An ISO 3166-1 alpha-2 code (``JP``) or an ISO 3166-2 subdivision (``US-CA``: state
    thresholds count on it), in upper case; None when the value is neither."""
    text = value.strip().upper()
    country, dash, subdivision = text.partition("-")
    if not (len(country) == 2 and country.isascii() and country.isalpha()):
        return None
    if dash and not (0 < len(subdivision) <= 3 and subdivision.isascii() and subdivision.isalnum()):
        return None
    return text


def _as_text(value: Any) -> str | None:
    """A raw value as stripped text ("" when empty); None when it is neither text nor an integer.

    Integers are accepted because JSON and SQL sources often store phone numbers and ids as such.
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _contact(raw: Any, normalise: Callable[[str], str | None]) -> tuple[str | None, bool]:
    """(normalised value, whether a value was given but is invalid). Empty means not given."""
    if raw is None:
        return None, False
    text = _as_text(raw)
    if text == "":
        return None, False
    normal = normalise(text) if text is not None else None
    return normal, normal is None


# -- recipients ----------------------------------------------------------------------------


def build_recipient(
    row: int,
    *,
    id: Any,
    name: Any = None,
    email: Any = None,
    phone: Any = None,
    push_token: Any = None,
    locale: Any = None,
    region: Any = None,
    attrs: dict[str, Any] | None = None,
) -> Recipient:
    """A normalised Recipient from one row's raw values (strings, or JSON/SQL values).

    A row without an id is malformed: the delivery ledger keys on it. Invalid contact values
    are recorded in ``invalid`` with a reason; empty ones simply leave the field unset.
    """
    rid = _as_text(id)
    if not rid:
        why = "missing id" if rid == "" or id is None else "id is not text or a whole number"
        return malformed_recipient(row, why)
    if len(rid) > MAX_RECIPIENT_ID:
        return malformed_recipient(row, f"id longer than {MAX_RECIPIENT_ID} characters")
    if "\x00" in rid:  # PostgreSQL keeps no NUL in text: the fan-out would fail on every try
        return malformed_recipient(row, "id holds a NUL character")
    region_code = normalise_region(region) if isinstance(region, str) else None
    country = region_code.partition("-")[0] if region_code else None  # numbers dial by country
    phone_value, bad_phone = _contact(phone, lambda text: normalise_phone(text, country))
    email_value, bad_email = _contact(email, normalise_email)
    push_value, bad_push = _contact(push_token, normalise_push_token)
    invalid: dict[str, str] = {}
    if bad_phone:
        invalid["phone"] = INVALID_PHONE
    if bad_email:
        invalid["email"] = INVALID_EMAIL
    if bad_push:
        invalid["push_token"] = INVALID_PUSH
    # One line, composed characters: the name is printed in greetings and reports.
    name_text = " ".join(name.replace("\x00", " ").split()) if isinstance(name, str) else None
    return Recipient(
        id=rid,
        row=row,
        name=unicodedata.normalize("NFC", name_text) if name_text else None,
        email=email_value,
        phone=phone_value,
        push_token=push_value,
        locale=normalise_locale(locale) if isinstance(locale, str) else None,
        region=region_code,
        attrs=attrs if attrs is not None else {},
        invalid=invalid,
    )


def malformed_recipient(row: int, reason: str, id: str | None = None) -> Recipient:
    """A row that could not be read: kept, so every step reports it skipped with ``reason``.

    ``reason`` must not quote the row's content (it may be personal data); say what is wrong
    and where (``"3 fields, header has 7 (line 12)"``).
    """
    why = f"malformed row: {reason}"
    return Recipient(
        id=id or f"row-{row}",
        row=row,
        invalid=dict.fromkeys(CONTACT_FIELDS, why),
    )
