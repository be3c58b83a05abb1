"""Contact normalisation: phone numbers, e-mail addresses, push tokens, locales, recipients."""

from __future__ import annotations

import random
import unicodedata

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email

from orchestrator.contacts import (
    INVALID_EMAIL,
    INVALID_PHONE,
    INVALID_PUSH,
    build_recipient,
    malformed_recipient,
    normalise_email,
    normalise_locale,
    normalise_phone,
    normalise_push_token,
    normalise_region,
)


def _library_phone(text: str, region: str | None = None) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_corpus() -> list[str]:
    """Every region's example numbers, and deterministic near-misses of them."""
    rng = random.Random(7)
    corpus = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            corpus.append(e164)
            for _ in range(25):
                digits = list(e164)
                for _ in range(rng.randrange(1, 4)):
                    digits[rng.randrange(2, len(digits))] = str(rng.randrange(10))
                if rng.random() < 0.15:
                    digits.append(str(rng.randrange(10)))
                if rng.random() < 0.15:
                    digits.pop()
                corpus.append("".join(digits))
    return corpus


def test_e164_fast_path_gives_phonenumbers_own_answer() -> None:
    corpus = _phone_corpus()
    disagreements = [s for s in corpus if normalise_phone(s) != _library_phone(s)]
    assert len(corpus) > 10_000
    assert disagreements == []
    # the corpus holds both kinds, so the comparison means something
    valid = sum(_library_phone(s) is not None for s in corpus)
    assert 0.2 * len(corpus) < valid < 0.9 * len(corpus)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+819012345678", None, "+819012345678"),
        ("  +12015550123 ", None, "+12015550123"),
        ("090-1234-5678", "JP", "+819012345678"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("07400 123456", "GB", "+447400123456"),
        ("01512 3456789", "DE", "+4915123456789"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+44 (0)7400 123456", None, "+447400123456"),
        ("+4407400123456", None, "+447400123456"),  # national 0 after the country code
        ("+39 06 1234 5678", None, "+390612345678"),  # Italian fixed lines keep their 0
        ("+819012345678", "US", "+819012345678"),  # the + wins over the row's region
    ],
)
def test_phone_numbers_become_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("090-1234-5678", None),  # national number, no region: which country?
        ("2015550123", None),
        ("+1 555 555 5555", None),  # no such area code
        ("+12015550", None),  # too short
        ("+999123456789", None),  # no such country code
        ("12345", "US"),
        ("n/a", "US"),
        ("090-1234-5678", "XX"),  # unknown region
        ("", "US"),
    ],
)
def test_invalid_phone_numbers(raw: str, region: str | None) -> None:
    assert normalise_phone(raw, region) is None


def test_email_normalised_like_email_validator() -> None:
    assert normalise_email(" Jane.Doe@Example.COM ") == "Jane.Doe@example.com"
    assert normalise_email("Postmaster@Example.com") == "postmaster@example.com"
    assert normalise_email("ユーザー@例え.jp") == "ユーザー@例え.jp"
    assert normalise_email("user@xn--r8jz45g.jp") == "user@例え.jp"
    corpus = [
        "a@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "Info@Example.org",
        "x@example.COM",
        "x@localhost",
        "x@example",
        "x@example.test",
        "x@-example.com",
        "x@exa_mple.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        '"quoted"@example.com',
        "Jane <jane@example.com>",
        "a@@example.com",
        "@example.com",
        "a@",
        "a" * 64 + "@" + "b" * 60 + ".com",
        "a" * 200 + "@" + "b" * 60 + ".com",
        "a@" + "b" * 64 + ".com",
        "a@1.2.3.4",
        "a@[1.2.3.4]",
        "müller@example.de",
        "a@exämple.de",
    ]
    for address in corpus:
        try:
            expected: str | None = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            expected = None
        assert normalise_email(address) == expected, address


@pytest.mark.parametrize(
    "token",
    [
        "a" * 64,
        "a" * 320,  # the longest the ledger keeps
        "0123456789abcdef" * 4,
        "dGVzdF90b2tlbl8x:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx_efg-VKcPpm6t2wBZmNdMZa",
        "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]",
        "  abcdefgh1234  ",
    ],
)
def test_valid_push_tokens(token: str) -> None:
    assert normalise_push_token(token) == token.strip()


@pytest.mark.parametrize("token", ["", "n/a", "null", "tok en with spaces", "a" * 321, "tök€n123"])
def test_invalid_push_tokens(token: str) -> None:
    assert normalise_push_token(token) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ja-JP", "ja-JP"),
        ("EN_us", "en-US"),
        ("en", "en"),
        ("DE", "de"),
        ("en_US.UTF-8", "en-US"),
        ("zh_hant_tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        (" fr-fr ", "fr-FR"),
        ("english", None),
        ("", None),
        ("en-USA-x", None),
    ],
)
def test_locales_become_bcp47(raw: str, expected: str | None) -> None:
    assert normalise_locale(raw) == expected


def test_regions() -> None:
    assert normalise_region(" jp ") == "JP"
    assert normalise_region("USA") is None
    assert normalise_region(" us-ca ") == "US-CA"
    assert normalise_region("US-") is None
    assert normalise_region("US-CALI") is None
    assert normalise_region("1A") is None


def test_recipient_reports_invalid_contacts_without_their_values() -> None:
    recipient = build_recipient(
        4,
        id="p-4",
        name="Ann",
        email="ann.example.com",
        phone="+1 555 555 5555",
        push_token="not a token",
        region="US",
    )
    assert recipient.invalid == {
        "phone": INVALID_PHONE,
        "email": INVALID_EMAIL,
        "push_token": INVALID_PUSH,
    }
    assert (recipient.phone, recipient.email, recipient.push_token) == (None, None, None)
    for reason in recipient.invalid.values():
        assert "555" not in reason and "ann" not in reason and "not a" not in reason
    assert recipient.address("phone") == (None, INVALID_PHONE)
    assert recipient.address("email") == (None, INVALID_EMAIL)


def test_recipient_normalises_every_field() -> None:
    decomposed = unicodedata.normalize("NFD", "Jürgen  Müller\n")
    recipient = build_recipient(
        1,
        id=" 42 ",
        name=decomposed,
        email="J.Mueller@Example.DE",
        phone="01512 3456789",
        push_token=" " + "f" * 64 + " ",
        locale="de_de",
        region="de",
        attrs={"tier": "gold"},
    )
    assert recipient.id == "42"
    assert recipient.name == "Jürgen Müller"
    assert unicodedata.is_normalized("NFC", recipient.name)
    assert recipient.email == "J.Mueller@example.de"
    assert recipient.phone == "+4915123456789"
    assert recipient.push_token == "f" * 64
    assert (recipient.locale, recipient.region) == ("de-DE", "DE")
    assert recipient.attrs == {"tier": "gold"}
    assert recipient.invalid == {}
    assert recipient.address("phone") == ("+4915123456789", None)


def test_empty_contacts_are_absent_not_invalid() -> None:
    recipient = build_recipient(2, id="x", email="", phone="   ", push_token=None)
    assert recipient.invalid == {}
    assert recipient.address("email") == (None, "no e-mail address")


def test_typed_values_from_json_or_sql() -> None:
    recipient = build_recipient(3, id=17, phone=2015550123, region="US", email=12, name=5)
    assert recipient.id == "17"
    assert recipient.phone == "+12015550123"
    assert recipient.invalid == {"email": INVALID_EMAIL}
    assert recipient.name is None


@pytest.mark.parametrize(
    ("raw_id", "why"),
    [(None, "missing id"), ("  ", "missing id"), ([1], "id is not text or a whole number")],
)
def test_rows_without_a_usable_id_are_malformed(raw_id: object, why: str) -> None:
    recipient = build_recipient(9, id=raw_id, email="a@example.com")
    assert recipient.id == "row-9"
    assert recipient.row == 9
    assert recipient.email is None
    assert set(recipient.invalid) == {"phone", "email", "push_token"}
    assert set(recipient.invalid.values()) == {f"malformed row: {why}"}


def test_an_id_longer_than_the_ledger_keeps_makes_the_row_malformed() -> None:
    """The ledger keeps ids of up to 200 characters: a longer one is a malformed row (skipped
    with the reason), never a fan-out that fails on it and every row after."""
    assert build_recipient(4, id="p" * 200, email="a@example.com").email == "a@example.com"
    recipient = build_recipient(4, id="p" * 201, email="a@example.com")
    assert recipient.id == "row-4"
    assert set(recipient.invalid.values()) == {"malformed row: id longer than 200 characters"}


def test_a_nul_in_an_id_makes_the_row_malformed_and_in_a_name_a_space() -> None:
    """PostgreSQL keeps no NUL in text: an id with one would fail the fan-out on every try."""
    recipient = build_recipient(5, id="p\x005", email="a@example.com")
    assert recipient.id == "row-5"
    assert set(recipient.invalid.values()) == {"malformed row: id holds a NUL character"}
    assert build_recipient(6, id="p6", name="Ann\x00Lee").name == "Ann Lee"


def test_malformed_recipient_keeps_a_given_id() -> None:
    recipient = malformed_recipient(5, "3 fields, header has 7 (line 6)", "p-5")
    assert recipient.id == "p-5"
    assert recipient.address("push_token") == (
        None,
        "malformed row: 3 fields, header has 7 (line 6)",
    )
