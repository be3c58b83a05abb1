"""The Twilio plugin: exact Messages/Calls requests, TwiML, voices, limits, settings."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import breach_twilio
import pytest
from breach_twilio import (
    SmsTooLong,
    TwilioCall,
    TwilioSms,
    TwimlTooLong,
    build_twiml,
    count_segments,
    voice_for,
)
from breach_twilio.twiml import SAY_MAX_BYTES, TWIML_MAX_CHARS
from factories import HOSTILE, make_message, make_notice, make_recipient, recording_server

from orchestrator.notifier import Notifier
from orchestrator.pluginhost import PluginHost
from orchestrator.segments import count_segments as core_count_segments

SID = "AC" + "0" * 32
SETTINGS = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_AUTH_TOKEN": "secret-token",
    "TWILIO_FROM": "+15005550006",
    "BREACH_RECEIPT_BASE_URL": "https://breach.example/",
}


class _Tags(HTMLParser):
    """Collects start tags and text of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_html(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def test_plugin_registers_both_notifiers_through_the_host() -> None:
    registered: list[type[Notifier]] = []
    breach_twilio.register_notifiers(register=registered.append)
    assert registered == [TwilioSms, TwilioCall]

    host = PluginHost(entrypoints=False, extra=[("twilio", breach_twilio)], settings={})
    assert host.channels()["sms"] == ["twilio-sms"]
    assert host.channels()["call"] == ["twilio-call"]


def test_class_attributes() -> None:
    assert (TwilioSms.name, TwilioSms.channel, TwilioSms.contact) == ("twilio-sms", "sms", "phone")
    assert (TwilioCall.name, TwilioCall.channel, TwilioCall.contact) == (
        "twilio-call",
        "call",
        "phone",
    )
    assert TwilioSms.max_batch == 1 and TwilioCall.max_batch == 1
    assert TwilioSms.default_rate == 10.0
    assert 0 < TwilioCall.default_rate < TwilioSms.default_rate
    for notifier in (TwilioSms, TwilioCall):
        secret = {s.name for s in notifier.settings_spec if s.secret}
        assert secret == {"TWILIO_AUTH_TOKEN", "TWILIO_TEST_AUTH_TOKEN"}


def test_sms_payload_is_the_exact_messages_request() -> None:
    payload = TwilioSms(SETTINGS).build_payload(make_message("sms"))
    assert payload == {
        "method": "POST",
        "path": f"/2010-04-01/Accounts/{SID}/Messages.json",
        "form": {
            "To": "+447700900123",
            "From": "+15005550006",
            "Body": make_notice().sms,
            "StatusCallback": "https://breach.example/receipts/twilio?delivery_id=d-0001",
        },
    }
    assert "secret-token" not in repr(payload)


def test_sms_prefers_the_messaging_service_and_omits_from() -> None:
    settings = {**SETTINGS, "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32}
    form = TwilioSms(settings).build_payload(make_message("sms"))["form"]
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in form


def test_status_callback_comes_from_the_message_then_the_base_url_then_nowhere() -> None:
    message = make_message("sms", status_callback="https://hooks.example/twilio?d=1")
    assert TwilioSms(SETTINGS).build_payload(message)["form"]["StatusCallback"] == (
        "https://hooks.example/twilio?d=1&delivery_id=d-0001"
    )
    settings = {k: v for k, v in SETTINGS.items() if k != "BREACH_RECEIPT_BASE_URL"}
    sms = TwilioSms(settings).build_payload(make_message("sms"))["form"]
    call = TwilioCall(settings).build_payload(make_message("call"))["form"]
    assert "StatusCallback" not in sms
    assert "StatusCallback" not in call and "StatusCallbackEvent" not in call


def test_unset_settings_show_as_placeholders_in_a_dry_run_payload() -> None:
    payload = TwilioSms({}).build_payload(make_message("sms"))
    assert payload["path"] == "/2010-04-01/Accounts/<TWILIO_ACCOUNT_SID>/Messages.json"
    assert payload["form"]["From"] == "<TWILIO_FROM>"


def test_missing_settings_name_what_is_missing() -> None:
    assert TwilioSms({}).missing_settings() == [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID",
    ]
    with_service = {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_MESSAGING_SERVICE_SID": "MG1",
    }
    assert TwilioSms(with_service).missing_settings() == []
    # a Messaging Service cannot place calls
    assert TwilioCall(with_service).missing_settings() == ["TWILIO_FROM"]
    assert TwilioCall(SETTINGS).missing_settings() == []


def test_sms_body_travels_verbatim_and_preview_escapes_it() -> None:
    message = make_message("sms", notice=make_notice(sms=HOSTILE))
    sms = TwilioSms(SETTINGS)
    assert sms.build_payload(message)["form"]["Body"] == HOSTILE
    preview = _parse_html(sms.preview_html(message))
    assert "script" not in preview.tags and "hangup" not in preview.tags
    assert HOSTILE in "".join(preview.text)


def test_sms_preview_shows_segments_and_direction() -> None:
    message = make_message("sms", notice=make_notice("ar"))
    page = TwilioSms(SETTINGS).preview_html(message)
    segments = count_segments(message.notice.sms)
    assert segments.encoding == "UCS-2"
    assert f"{segments.segments} segment" in page
    assert 'dir="rtl"' in page


def test_too_long_sms_is_refused_with_a_clear_error() -> None:
    message = make_message("sms", notice=make_notice(sms="x" * 1601))
    with pytest.raises(SmsTooLong, match="1601 characters"):
        TwilioSms(SETTINGS).build_payload(message)


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 70 + "ç", "UCS-2", 2),  # ç is not in GSM-7 (only Ç is)
        ("日" * 70, "UCS-2", 1),
        ("日" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # each emoji is two UTF-16 units
        ("😀" * 36, "UCS-2", 2),
        ("", "GSM-7", 1),  # carriers bill an empty body as one SMS
        # an escape pair never straddles two parts: 152 + (2 + 151) + 1 septets
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        # nor does a surrogate pair: 33 emoji (66 units) per 67-unit part
        ("😀" * 67, "UCS-2", 3),
    ],
)
def test_segment_counting_is_the_cores_exact_count(text: str, encoding: str, count: int) -> None:
    seg = count_segments(text)
    assert (seg.encoding, seg.segments) == (encoding, count)
    assert count_segments is core_count_segments


def test_call_payload_fields_and_events() -> None:
    payload = TwilioCall(SETTINGS).build_payload(make_message("call"))
    assert payload["method"] == "POST"
    assert payload["path"] == f"/2010-04-01/Accounts/{SID}/Calls.json"
    form = payload["form"]
    assert list(form) == ["To", "From", "Twiml", "StatusCallback", "StatusCallbackEvent"]
    assert form["To"] == "+447700900123" and form["From"] == "+15005550006"
    assert form["StatusCallback"] == "https://breach.example/receipts/twilio?delivery_id=d-0001"
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


def _says(twiml: str) -> list[ET.Element]:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return root.findall("Say")


def test_twiml_reads_the_script_twice_with_a_pause_between() -> None:
    notice = make_notice()
    twiml = TwilioCall(SETTINGS).build_payload(make_message("call", notice=notice))["form"]["Twiml"]
    root = ET.fromstring(twiml)
    paragraphs = notice.call.split("\n\n")
    says = root.findall("Say")
    assert [s.text for s in says] == paragraphs * 2
    positions = [i for i, child in enumerate(root) if child.tag == "Say"]
    # a short silence before the first words, a longer one before the second reading
    assert (root[0].tag, root[0].get("length")) == ("Pause", "1")
    before_second = root[positions[len(paragraphs)] - 1]
    assert (before_second.tag, before_second.get("length")) == ("Pause", "2")
    assert {(s.get("language"), s.get("voice")) for s in says} == {
        ("en-GB", "Polly.Amy-Neural")  # English text, recipient in en-GB
    }


def test_hostile_script_is_escaped_and_round_trips_exactly() -> None:
    script = HOSTILE + "\x00\x1b"  # control characters are not allowed in XML at all
    twiml = TwilioCall(SETTINGS).build_payload(
        make_message("call", notice=make_notice(call=script))
    )["form"]["Twiml"]
    root = ET.fromstring(twiml)
    assert root.find(".//Hangup") is None and root.find(".//script") is None
    assert [s.text for s in root.findall("Say")] == [HOSTILE, HOSTILE]
    assert "]]>" not in twiml


@pytest.mark.parametrize(
    ("text_locale", "recipient_locale", "language", "voice"),
    [
        ("en", None, "en-US", "Polly.Joanna-Neural"),
        ("en", "en-GB", "en-GB", "Polly.Amy-Neural"),
        ("ja", "ja-JP", "ja-JP", "Polly.Takumi-Neural"),
        ("de", None, "de-DE", "Polly.Vicki-Neural"),
        ("fr", "fr-CA", "fr-CA", "Polly.Gabrielle-Neural"),
        ("es", "es-MX", "es-MX", "Polly.Mia-Neural"),
        ("es", None, "es-ES", "Polly.Lucia-Neural"),
        ("ar", None, "arb", "Polly.Zeina"),
        ("zh-Hans", "zh-CN", "cmn-CN", "Polly.Zhiyu-Neural"),
        ("pt", None, "pt-BR", "Polly.Camila-Neural"),
        ("pt-PT", None, "pt-PT", "Polly.Ines-Neural"),
        # the text's language decides: a Japanese speaker sent the English notice hears English
        ("en", "ja-JP", "en-US", "Polly.Joanna-Neural"),
    ],
)
def test_voice_follows_the_text_language_and_the_recipient_accent(
    text_locale: str, recipient_locale: str | None, language: str, voice: str
) -> None:
    chosen = voice_for(text_locale, recipient_locale)
    assert (chosen.language, chosen.voice, chosen.exact) == (language, voice, True)


def test_unknown_language_falls_back_to_en_us_and_the_preview_says_so() -> None:
    assert voice_for("sw") == voice_for("sw", "sw-KE")
    fallback = voice_for("sw")
    assert (fallback.language, fallback.exact) == ("en-US", False)
    message = make_message("call", notice=make_notice("sw"), recipient=make_recipient(locale="sw"))
    assert "en-US voice" in TwilioCall(SETTINGS).preview_html(message)


def test_twiml_for_japanese_and_arabic_parses_and_keeps_the_text() -> None:
    for locale in ("ja", "ar"):
        notice = make_notice(locale)
        message = make_message("call", notice=notice, recipient=make_recipient(locale=locale))
        says = _says(TwilioCall(SETTINGS).build_payload(message)["form"]["Twiml"])
        assert "".join(s.text or "" for s in says) == notice.call.replace("\n\n", "") * 2


def test_long_script_is_read_once_when_twice_does_not_fit() -> None:
    script = "\n\n".join(["Please listen carefully. " * 12] * 6)  # about 1,800 characters
    twiml = build_twiml(script, voice_for("en"))
    assert twiml.readings == 1
    assert len(twiml.xml) <= TWIML_MAX_CHARS
    assert len(_says(twiml.xml)) == 6


def test_script_too_long_even_once_raises_a_clear_error() -> None:
    message = make_message("call", notice=make_notice(call="word " * 900))
    with pytest.raises(TwimlTooLong, match="shorten the notice's `call` text") as caught:
        TwilioCall(SETTINGS).build_payload(message)
    assert caught.value.locale == "en"
    assert caught.value.length > TWIML_MAX_CHARS


@pytest.mark.parametrize("size", [10, 500, 1000, 1500, 1900, 2100, 3000, 3900])
def test_twiml_is_never_longer_than_twilio_accepts(size: int) -> None:
    script = ("A sentence of the notice. " * (size // 26 + 1))[:size]
    try:
        twiml = build_twiml(script, voice_for("en"))
    except TwimlTooLong:
        return
    assert len(twiml.xml) <= TWIML_MAX_CHARS
    ET.fromstring(twiml.xml)


def test_long_japanese_paragraph_is_split_under_pollys_per_say_limit() -> None:
    script = "お客様の情報が漏えいした可能性があります。" * 60  # 1,260 characters, 3,780 bytes
    twiml = build_twiml(script, voice_for("ja"))
    says = _says(twiml.xml)
    assert all(len((s.text or "").encode()) <= SAY_MAX_BYTES for s in says)
    per_reading = says[: len(says) // twiml.readings]
    assert "".join(s.text or "" for s in per_reading) == script


def test_call_preview_shows_the_spoken_text_and_escapes_it() -> None:
    message = make_message("call", notice=make_notice(call=HOSTILE))
    preview = _parse_html(TwilioCall(SETTINGS).preview_html(message))
    assert "script" not in preview.tags and "hangup" not in preview.tags
    assert "Polly.Amy-Neural" in "".join(preview.text)


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode(), keep_blank_values=True)


def _as_lists(form: dict[str, Any]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in form.items()}


def test_twilio_sdk_sends_exactly_our_sms_and_call_requests() -> None:
    from twilio.rest import Client

    sms_payload = TwilioSms(SETTINGS).build_payload(make_message("sms", notice=make_notice("ja")))
    call_payload = TwilioCall(SETTINGS).build_payload(make_message("call"))
    with recording_server(status=201, reply={"sid": "SM" + "2" * 32}) as server:
        client = Client(SID, "secret-token")
        client.api.base_url = server.url
        form = sms_payload["form"]
        client.messages.create(
            to=form["To"], from_=form["From"], body=form["Body"],
            status_callback=form["StatusCallback"],
        )  # fmt: skip
        form = call_payload["form"]
        client.calls.create(
            to=form["To"], from_=form["From"], twiml=form["Twiml"],
            status_callback=form["StatusCallback"],
            status_callback_event=form["StatusCallbackEvent"],
        )  # fmt: skip
    sms_request, call_request = server.requests
    assert sms_request.path == sms_payload["path"]
    assert _form(sms_request.body) == _as_lists(sms_payload["form"])
    assert call_request.path == call_payload["path"]
    assert _form(call_request.body) == _as_lists(call_payload["form"])


def test_payload_building_does_not_import_the_twilio_sdk() -> None:
    code = (
        "import sys, breach_twilio\n"
        "from factories import make_message\n"
        "breach_twilio.TwilioCall({}).build_payload(make_message('call'))\n"
        "assert 'twilio' not in sys.modules, 'twilio SDK imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
