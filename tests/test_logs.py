"""Structured logging: JSON lines, plain text, masking of personal data, redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest

from orchestrator import logs
from orchestrator.logs import (
    clear_secrets,
    configure,
    mask_email,
    mask_phone,
    mask_recipient,
    mask_text,
    register_secret,
)

PHONE = "+14155550101"
EMAIL = "alice.smith@example.org"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    clear_secrets()


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("orchestrator.test_logs")


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_base_fields_and_every_extra(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    log.info("step started", extra={"incident": "INC-20261125-ab12cd", "batch": 500})
    log.warning("provider slow %s", "twilio", extra={"latency": 1.5, "ok": False, "x": None})
    first, second = json_lines(out)
    assert TS.fullmatch(first["ts"])
    assert first == {
        "ts": first["ts"],
        "level": "INFO",
        "logger": "orchestrator.test_logs",
        "event": "step started",
        "incident": "INC-20261125-ab12cd",
        "batch": 500,
    }
    assert second["event"] == "provider slow twilio"
    assert (second["level"], second["latency"], second["ok"], second["x"]) == (
        "WARNING",
        1.5,
        False,
        None,
    )


def test_extras_cannot_overwrite_the_base_fields(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    log.info("real", extra={"event": "fake", "ts": "yesterday", "logger": "other"})
    (line,) = json_lines(out)
    assert (line["event"], line["logger"]) == ("real", "orchestrator.test_logs")
    assert TS.fullmatch(line["ts"])
    assert (line["extra_event"], line["extra_ts"], line["extra_logger"]) == (
        "fake",
        "yesterday",
        "other",
    )


def test_values_that_json_cannot_hold_are_made_readable(log: logging.Logger) -> None:
    class Channel(Enum):
        SMS = "sms"

    out = io.StringIO()
    configure(json=True, stream=out)
    when = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    log.info(
        "odd values",
        extra={"when": when, "channel": Channel.SMS, "ids": (1, 2), "ratio": float("nan")},
    )
    (line,) = json_lines(out)
    assert line["when"] == "2026-11-25T10:00:00+00:00"
    assert (line["channel"], line["ids"], line["ratio"]) == ("sms", [1, 2], "nan")


def test_personal_data_is_masked_in_message_and_nested_extras(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    log.info(
        "sent to %s and %s",
        PHONE,
        EMAIL,
        extra={
            "detail": {
                "errors": [f"{PHONE} unreachable", {"note": f"bounce from {EMAIL}"}],
                PHONE: "delivered",
            },
            "summary": "2 of 20000 recipients failed",
        },
    )
    raw = out.getvalue()
    assert "4155550101" not in raw and "alice" not in raw
    (line,) = json_lines(out)
    assert line["event"] == "sent to +1*******01 and a***@example.org"
    assert line["detail"] == {
        "errors": ["+1*******01 unreachable", {"note": "bounce from a***@example.org"}],
        "+1*******01": "delivered",
    }
    assert line["summary"] == "2 of 20000 recipients failed"


def test_contact_fields_are_masked_whatever_they_look_like(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    token = "fcm-d8f7a6b5c4e3f2a1b0c9d8e7f6a5"
    log.info(
        "queued",
        extra={
            "to": "4155550101",  # bare national digits: left alone in free text
            "push_token": token,
            "recipients": [EMAIL, PHONE],
            "email": {"primary": EMAIL},
        },
    )
    log.info("counted", extra={"recipients": 20000})  # numbers are counts, never contacts
    line, counted = json_lines(out)
    assert line["to"] == "*******01"
    assert line["push_token"] == "fcm-d8***"
    assert line["recipients"] == ["a***@example.org", "+1*******01"]
    assert line["email"] == {"primary": "a***@example.org"}
    assert counted["recipients"] == 20000
    assert token not in out.getvalue()


def test_exception_text_is_masked(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=True, stream=out)
    try:
        raise ValueError(f"provider refused {PHONE}")
    except ValueError:
        log.exception("send failed")
    (line,) = json_lines(out)
    assert "ValueError: provider refused +1*******01" in line["exc"]
    assert "4155550101" not in out.getvalue()


def test_secrets_are_redacted_everywhere(log: logging.Logger) -> None:
    api_key = "SG.kj3h4k5j6h7k8j9.abcdefghijklmnop"
    token = "tw_auth_0123456789abcdef"
    register_secret(api_key)
    register_secret(token)
    out = io.StringIO()
    configure(json=True, stream=out)
    log.info(
        "calling with %s",
        api_key,
        extra={
            "headers": {"Authorization": f"Bearer {api_key}"},
            "url": f"https://api.example.com/send?token={token}&x=1",
            "auth": [token],
        },
    )
    try:
        raise RuntimeError(f"bad key {api_key}")
    except RuntimeError:
        log.exception("failed")
    raw = out.getvalue()
    assert api_key not in raw and token not in raw
    first, second = json_lines(out)
    assert first["event"] == "calling with ***"
    assert first["headers"] == {"Authorization": "Bearer ***"}
    assert first["url"] == "https://api.example.com/send?token=***&x=1"
    assert first["auth"] == ["***"]
    assert "RuntimeError: bad key ***" in second["exc"]


def test_url_encoded_secrets_are_redacted_too() -> None:
    register_secret("p@ss/word+1")
    assert mask_text("GET /x?password=p%40ss%2Fword%2B1") == "GET /x?password=***"


def test_secret_containing_another_is_redacted_whole() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234efgh5678")
    assert mask_text("key=abcd1234efgh5678") == "key=***"


def test_short_or_empty_secrets_are_not_registered() -> None:
    for value in ("", "   ", "ab", None):
        register_secret(value)
    assert mask_text("ab cd") == "ab cd"
    assert logs.redact_secrets("anything") == "anything"


def test_plain_format_prints_event_then_fields(log: logging.Logger) -> None:
    out = io.StringIO()
    configure(json=False, stream=out)
    log.warning(
        "delivery failed",
        extra={"to": PHONE, "attempt": 3, "reason": "carrier said no", "meta": {"a": [1, 2]}},
    )
    (line,) = out.getvalue().splitlines()
    ts, rest = line.split(" ", 1)
    assert TS.fullmatch(ts)
    assert rest == (
        "WARNING orchestrator.test_logs: delivery failed "
        'to=+1*******01 attempt=3 reason="carrier said no" meta={"a":[1,2]}'
    )


def test_plain_format_masks_and_redacts_the_traceback(log: logging.Logger) -> None:
    register_secret("s3cr3t-token-value")
    out = io.StringIO()
    configure(json=False, stream=out)
    try:
        raise OSError(f"{EMAIL} with s3cr3t-token-value")
    except OSError:
        log.error("boom", exc_info=True)
    text = out.getvalue()
    assert "Traceback" in text and "OSError: a***@example.org with ***" in text
    assert "alice" not in text and "s3cr3t" not in text


def test_configure_replaces_its_own_handler_and_sets_the_level(log: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure(json=True, stream=first)
    configure(json=True, level="warning", stream=second)
    log.info("hidden")
    log.warning("shown")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["shown"]
    with pytest.raises(ValueError, match="loud"):
        configure(json=True, level="loud")


def test_configure_defaults_to_the_current_stderr(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(json=False)
    log.error("to stderr", extra={"email": EMAIL})
    err = capsys.readouterr().err
    assert "to stderr email=a***@example.org" in err


# -- the masking functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550101", "+1*******01"),
        ("+1 (415) 555-0101", "+1*******01"),
        ("+442079460958", "+44*******58"),
        ("+358401234567", "+358*******67"),
        ("+819012345678", "+81*******78"),
        ("0044 20 7946 0958", "+44*******58"),
        ("%2B14155550101", "+1*******01"),
        ("(415) 555-0101", "*******01"),
        ("0612345678", "*******78"),
        ("1234", "*******"),
    ],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("alice@example.org", "a***@example.org"),
        ("Bob.Smith+tag@mail.example.co.uk", "B***@mail.example.co.uk"),
        ("x@y.io", "x***@y.io"),
        ("not an address", "***"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("sent to +14155550101 ok", "sent to +1*******01 ok"),
        ("call +1 (415) 555-0101.", "call +1*******01."),
        ("(+44) 20 7946 0958", "+44*******58"),
        ("(+14155550101) or (call 415-555-0101)", "(+1*******01) or (call *******01)"),
        ("+44 (0)20 7946 0958", "+44*******58"),
        ("+7 912 345-67-89 / +86 138 0013 8000", "+7*******89 / +86*******00"),
        ("US (415) 555-0101, UK 020 7946 0958", "US *******01, UK *******58"),
        ("415-555-0101 or 415.555.0101", "*******01 or *******01"),
        ("FR 06 12 34 56 78 / 0612345678", "FR *******78 / *******78"),
        ("whatsapp:+14155550101", "whatsapp:+1*******01"),
        ("to=+14155550101&from=+14155550199", "to=+1*******01&from=+1*******99"),
        ('{"to": "+14155550101"}', '{"to": "+1*******01"}'),
        ("%2B14155550101", "+1*******01"),
        (
            "mail alice@example.org, bob@mail.example.co.uk",
            "mail a***@example.org, b***@mail.example.co.uk",
        ),
        ("to=alice@example.org", "to=a***@example.org"),
        ("'alice@example.org'", "'a***@example.org'"),
        ("?email=alice%40example.org", "?email=a***%40example.org"),
    ],
)
def test_mask_text_masks(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked  # masking twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:00:00.123456+00:00",
        "2026-11-25 10:00:00",
        "due 2026-11-25 at 10:00",
        "on 25.11.2026",
        "20261125T100000Z",
        "3f2b1c9e-1234-5678-9abc-def012345678",
        "12345678-1234-5678-1234-567812345678",
        "INC-20261125-ab12cd",
        "incident INC-20261125-ab12cd, step sms-1",
        "20000 recipients",
        "12000000 recipients, 3 batches of 500",
        "reset at 1795000042 (1795000042.5)",
        "delivery 123456789 failed",
        "zero-padded 0000012345",
        "server 192.168.100.200 and 10.0.0.1",
        "took 0.1234567 s, rate 197.04/s",
        "version 1.2.3, build 2026.11.25",
        "sha 0123456789abcdef",
        "path /var/spool/2026/11/25/1234567.json",
        "port 127.0.0.1:8080",
        "Retry-After: 120",
        "amount 1,234,567.89",
    ],
)
def test_mask_text_leaves_non_personal_values_alone(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        # The recipient shapes the provider simulator's page shows, one per provider.
        ("+14155550101", "+1*******01"),  # twilio To
        ("whatsapp:+14155550101", "whatsapp:+1*******01"),
        ("alice@example.org", "a***@example.org"),  # sendgrid personalizations
        ("mailto:alice@example.org", "mailto:a***@example.org"),
        ("dGVzdA:APA91bH8xYz0123456789abcdefghij", "dGVzdA***"),  # fcm token
        ("topic:breach-notices", "topic:breach-notices"),  # fcm topics are not personal
        ("condition:'a' in topics", "condition:'a' in topics"),
        ("415555", "*******55"),  # six digits: still a number, as the page reads it
        ("4155550101", "*******01"),
        ("short", "***"),
    ],
)
def test_mask_recipient(value: str, masked: str) -> None:
    assert mask_recipient(value) == masked


def test_libraries_are_quiet_unless_asked_and_plugins_log_as_the_project() -> None:
    """A provider SDK narrating every request at INFO would drown the campaign's own lines."""
    from orchestrator.logs import adopt, configure
    from orchestrator.pluginhost import PluginHost

    PluginHost()  # loads the built-in plugins: their packages are adopted as the project's
    stream = io.StringIO()
    try:
        configure(stream=stream)
        logging.getLogger("twilio.http_client").info("-- BEGIN Twilio API Request --")
        logging.getLogger("httpx").info("HTTP Request: POST https://fcm.example")
        logging.getLogger("twilio.http_client").warning("the SDK's own trouble")
        logging.getLogger("orchestrator.engine").info("step fired")
        logging.getLogger("breach_twilio.notifiers").info("sms batch")
        adopt("breach_fax")  # a plugin loaded after logging was configured
        logging.getLogger("breach_fax.send").info("fax sent")
        quiet = stream.getvalue()
        configure(stream=(loud := io.StringIO()), libraries="INFO")
        logging.getLogger("twilio.http_client").info("-- BEGIN Twilio API Request --")
    finally:
        configure()
    assert "BEGIN Twilio" not in quiet and "HTTP Request" not in quiet
    assert "the SDK's own trouble" in quiet
    assert "step fired" in quiet and "sms batch" in quiet and "fax sent" in quiet
    assert "BEGIN Twilio" in loud.getvalue()
