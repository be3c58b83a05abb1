"""The SendGrid plugin: mail/send bodies, the accessible e-mail, batches and substitutions."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import breach_sendgrid
import pytest
from breach_sendgrid import MAX_PERSONALIZATIONS, SUBSTITUTIONS_MAX_BYTES, SendGridEmail
from factories import (
    HOSTILE,
    ORGANISATION,
    make_incident,
    make_message,
    make_notice,
    make_recipient,
)

from orchestrator.message import Message
from orchestrator.notifier import Notifier

NOW = datetime(2025, 3, 15, 8, 0, tzinfo=UTC)
SETTINGS = {
    "SENDGRID_API_KEY": "SG.secret",
    "BREACH_EMAIL_FROM": "Example Health Security <security@example-health.test>",
}
CALIFORNIA = [
    "What Happened",
    "What Information Was Involved",
    "What We Are Doing",
    "What You Can Do",
    "For More Information",
]


def _notifier(**settings: str) -> SendGridEmail:
    return SendGridEmail({**SETTINGS, **settings}, clock=lambda: NOW)


class _Html(HTMLParser):
    """Start tags, attributes, headings and text of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._heading: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2"):
            self._heading = tag
            self.headings.append((tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._heading:
            level, text = self.headings[-1]
            self.headings[-1] = (level, text + data)


def _html(page: str) -> _Html:
    parser = _Html()
    parser.feed(page)
    parser.close()
    return parser


def _parts(body: dict[str, Any]) -> tuple[str, str]:
    content = body["content"]
    assert [c["type"] for c in content] == ["text/plain", "text/html"]
    return content[0]["value"], content[1]["value"]


def _substituted(body: dict[str, Any], personalization: dict[str, Any]) -> tuple[str, str]:
    """What SendGrid makes of the content for one personalization."""
    text, html = _parts(body)
    for tag, value in personalization.get("substitutions", {}).items():
        text, html = text.replace(tag, value), html.replace(tag, value)
    return text, html


def _people(n: int, **notice: Any) -> list[Message]:
    return [
        make_message(
            delivery_id=f"d-{i:05d}",
            recipient=make_recipient(id=f"r-{i}", email=f"person{i}@example.test"),
            notice=make_notice(**notice),
        )
        for i in range(n)
    ]


def test_plugin_registers_the_email_notifier() -> None:
    registered: list[type[Notifier]] = []
    breach_sendgrid.register_notifiers(register=registered.append)
    assert registered == [SendGridEmail]
    assert (SendGridEmail.name, SendGridEmail.channel, SendGridEmail.contact) == (
        "sendgrid-email",
        "email",
        "email",
    )
    assert SendGridEmail.max_batch == MAX_PERSONALIZATIONS == 1000
    assert {s.name for s in SendGridEmail.settings_spec if s.secret} == {
        "SENDGRID_API_KEY",
        "SENDGRID_WEBHOOK_SECRET",
    }
    handlers: dict[str, object] = {}
    breach_sendgrid.register_receipts(register=handlers.__setitem__)
    assert handlers == {"sendgrid": breach_sendgrid.receipts.handle}


def test_missing_settings_name_what_is_missing() -> None:
    assert SendGridEmail({}).missing_settings() == ["SENDGRID_API_KEY", "BREACH_EMAIL_FROM"]
    assert SendGridEmail(SETTINGS).missing_settings() == []


def test_single_message_body_has_the_exact_fields() -> None:
    body = _notifier().build_payload(make_message())
    assert set(body) == {
        "from",
        "reply_to",
        "personalizations",
        "content",
        "categories",
        "headers",
        "mail_settings",
        "tracking_settings",
    }
    assert body["from"] == {
        "email": "security@example-health.test",
        "name": "Example Health Security",
    }
    assert body["reply_to"] == {
        "email": ORGANISATION["contact_email"],
        "name": ORGANISATION["name"],
    }
    assert body["personalizations"] == [
        {
            "to": [{"email": "alex@example.test", "name": "Alex Example"}],
            "subject": make_notice().subject,
            "custom_args": {
                "delivery_id": "d-0001",
                "incident_id": "inc-2025-0042",
                "step_id": "notify-email",
            },
            "headers": {"X-Entity-Ref-ID": "d-0001"},
        }
    ]
    assert body["categories"] == ["breach-notice", "incident:inc-2025-0042", "step:notify-email"]
    assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}
    assert body["tracking_settings"]["click_tracking"]["enable"] is False
    assert body["tracking_settings"]["open_tracking"]["enable"] is False
    assert "SG.secret" not in json.dumps(body)


def test_unset_sender_shows_as_a_placeholder_in_a_dry_run() -> None:
    body = SendGridEmail({}, clock=lambda: NOW).build_payload(make_message())
    assert body["from"] == {"email": "<BREACH_EMAIL_FROM>"}


def test_sandbox_mode_flag_follows_the_incident_mode() -> None:
    for mode, expected in (("sandbox", True), ("live", False), ("dry-run", False)):
        message = make_message(incident=make_incident(mode=mode))
        assert _notifier().build_payload(message)["mail_settings"]["sandbox_mode"] == {
            "enable": expected
        }
        batch = _notifier().build_batch_payload([message, *_people(2)])
        assert {b["mail_settings"]["sandbox_mode"]["enable"] for b in batch[:1]} == {expected}


def test_reply_to_setting_wins_and_recipient_names_lose_separators() -> None:
    message = make_message(recipient=make_recipient(name="Doe, Jane; Jr."))
    body = _notifier(BREACH_EMAIL_REPLY_TO="help@example-health.test").build_payload(message)
    assert body["reply_to"]["email"] == "help@example-health.test"
    # SendGrid rejects the whole request when a name contains "," or ";"
    assert body["personalizations"][0]["to"][0]["name"] == "Doe Jane Jr."


def test_english_html_has_the_california_title_and_headings_in_order() -> None:
    html = _parts(_notifier().build_payload(make_message()))[1]
    parsed = _html(html)
    assert ("h1", "Notice of Data Breach") in parsed.headings
    h2 = [text for level, text in parsed.headings if level == "h2"]
    assert [h for h in h2 if h in CALIFORNIA] == CALIFORNIA
    assert h2.index("How This May Affect You") == 2  # the extra impact section
    html_tag = next(attrs for tag, attrs in parsed.tags if tag == "html")
    assert (html_tag["lang"], html_tag["dir"]) == ("en", "ltr")
    assert any(t == "meta" and a.get("name") == "viewport" for t, a in parsed.tags)
    assert "Date of the breach: 2025-03-12 – 2025-03-13" in "".join(parsed.text)


@pytest.mark.parametrize(
    ("locale", "title", "heading"),
    [
        ("ja", "個人データ漏えいに関するお知らせ", "発生した事象"),
        ("de", "Benachrichtigung über eine Datenschutzverletzung", "Was ist passiert?"),
        ("fr", "Notification de violation de données", "Ce qui s’est passé"),
        ("es", "Aviso de filtración de datos", "Qué sucedió"),
        ("ko", "Notice of Data Breach", "What Happened"),  # no table: English headings
    ],
)
def test_headings_are_translated(locale: str, title: str, heading: str) -> None:
    body = _notifier().build_payload(make_message(notice=make_notice(locale)))
    text, html = _parts(body)
    parsed = _html(html)
    assert ("h1", title) in parsed.headings
    assert ("h2", heading) in parsed.headings
    assert title in text and heading in text


def test_arabic_mail_is_right_to_left() -> None:
    html = _parts(_notifier().build_payload(make_message(notice=make_notice("ar"))))[1]
    tags = _html(html).tags
    assert next(a for t, a in tags if t == "html")["dir"] == "rtl"
    assert next(a for t, a in tags if t == "div")["dir"] == "rtl"


def test_hostile_text_is_data_everywhere() -> None:
    notice = make_notice(
        subject=HOSTILE, what_happened=HOSTILE, impact=HOSTILE, contact=HOSTILE + "\x00"
    )
    incident = make_incident(organisation={**ORGANISATION, "name": HOSTILE, "address": HOSTILE})
    message = make_message(notice=notice, incident=incident)
    body = _notifier().build_payload(message)
    text, html = _parts(body)
    parsed = _html(html)
    assert not any(tag in ("script", "hangup", "say") for tag, _ in parsed.tags)
    assert "".join(parsed.text).count(HOSTILE) >= 5
    assert "{{ 7*7 }}" in html and "49" not in html  # never evaluated as a template
    assert text.count(HOSTILE) >= 4 and "\x00" not in text + html
    assert body["personalizations"][0]["subject"] == HOSTILE


def test_links_in_the_text_become_links_only_for_safe_schemes() -> None:
    notice = make_notice(contact="Visit https://example.test/help?a=1&b=2. Or javascript:alert(1)")
    parsed = _html(_parts(_notifier().build_payload(make_message(notice=notice)))[1])
    hrefs = [a["href"] for t, a in parsed.tags if t == "a"]
    assert "https://example.test/help?a=1&b=2" in hrefs
    assert not any(h and h.startswith("javascript") for h in hrefs)


def test_preview_is_the_html_part() -> None:
    message = make_message(notice=make_notice("ja"))
    assert _notifier().preview_html(message) == _parts(_notifier().build_payload(message))[1]


def test_batch_of_identical_notices_splits_at_1000_without_substitutions() -> None:
    messages = _people(2500)
    bodies = _notifier().build_batch_payload(messages)
    assert [len(b["personalizations"]) for b in bodies] == [1000, 1000, 500]
    ids = [p["custom_args"]["delivery_id"] for b in bodies for p in b["personalizations"]]
    assert sorted(ids) == sorted(m.delivery_id for m in messages)
    assert all("substitutions" not in p for b in bodies for p in b["personalizations"])
    # identical text for everyone: the shared content is exactly the single-message content
    assert bodies[0]["content"] == _notifier().build_payload(messages[0])["content"]


def test_each_person_gets_exactly_their_own_rendered_body() -> None:
    messages = [
        make_message(
            delivery_id=f"d-{i}",
            recipient=make_recipient(id=f"r-{i}", email=f"p{i}@example.test", name=f"P {i}"),
            notice=make_notice(
                subject=f"Notice for account {i}",
                what_happened=f"Your account {i} & <order #{i}> was in the copied table.",
            ),
        )
        for i in range(5)
    ]
    notifier = _notifier()
    bodies = notifier.build_batch_payload(messages)
    assert len(bodies) == 1
    body = bodies[0]
    for message, p in zip(messages, body["personalizations"], strict=True):
        single = notifier.build_payload(message)
        assert _substituted(body, p) == _parts(single)
        assert p["subject"] == message.notice.subject
        assert len(json.dumps(p["substitutions"], ensure_ascii=False).encode()) <= (
            SUBSTITUTIONS_MAX_BYTES
        )
    # only the sections that differ are substituted; the rest is written once
    keys = body["personalizations"][0]["substitutions"].keys()
    assert all("what_happened" in k or "subject" in k for k in keys)


def test_text_that_looks_like_a_tag_cannot_pull_in_someone_elses_text() -> None:
    messages = _people(2)
    first = make_notice(what_happened="-what_happened-html- %what_happened% -bo-")
    messages[0] = make_message(delivery_id="d-a", notice=first, recipient=messages[0].recipient)
    notifier = _notifier()
    body = notifier.build_batch_payload(messages)[0]
    for message, p in zip(messages, body["personalizations"], strict=True):
        assert _substituted(body, p) == _parts(notifier.build_payload(message))


def test_a_message_whose_substitutions_do_not_fit_gets_its_own_request() -> None:
    messages = _people(3)
    huge = make_notice(what_happened="データ" * 4000)  # 36,000 bytes
    messages[1] = make_message(delivery_id="d-huge", notice=huge, recipient=messages[1].recipient)
    messages[2] = make_message(
        delivery_id="d-other",
        notice=make_notice(what_happened="Something else happened."),
        recipient=messages[2].recipient,
    )
    notifier = _notifier()
    bodies = notifier.build_batch_payload(messages)
    alone = [
        b for b in bodies if b["personalizations"][0]["custom_args"]["delivery_id"] == "d-huge"
    ]
    assert len(alone) == 1 and len(alone[0]["personalizations"]) == 1
    assert "substitutions" not in alone[0]["personalizations"][0]
    assert alone[0]["content"] == notifier.build_payload(messages[1])["content"]
    grouped = [b for b in bodies if b is not alone[0]]
    assert sum(len(b["personalizations"]) for b in grouped) == 2


def test_the_same_address_never_appears_twice_in_one_request() -> None:
    shared = make_recipient(id="r-x", email="Family@Example.test")
    twin = make_recipient(email="family@example.test")
    messages = [
        *_people(3),
        make_message(delivery_id="d-twin", recipient=twin),
        make_message(delivery_id="d-x", recipient=shared),
    ]
    bodies = _notifier().build_batch_payload(messages)
    for body in bodies:
        emails = [p["to"][0]["email"].lower() for p in body["personalizations"]]
        assert len(emails) == len(set(emails))
    assert sum(len(b["personalizations"]) for b in bodies) == 5


def test_locales_are_sent_in_separate_requests_with_their_own_layout() -> None:
    messages = [
        make_message(delivery_id="d-en", notice=make_notice("en")),
        make_message(
            delivery_id="d-ja",
            notice=make_notice("ja"),
            recipient=make_recipient(email="ja@example.test", locale="ja"),
        ),
    ]
    bodies = _notifier().build_batch_payload(messages)
    langs = {_html(_parts(b)[1]).tags[0][1]["lang"] for b in bodies}
    assert len(bodies) == 2 and langs == {"en", "ja"}


def test_dynamic_template_mode_carries_the_document_per_person() -> None:
    notifier = _notifier(SENDGRID_TEMPLATE_ID="d-0123456789abcdef0123456789abcdef")
    messages = _people(1200, what_happened=HOSTILE)
    bodies = notifier.build_batch_payload(messages)
    assert [len(b["personalizations"]) for b in bodies] == [1000, 200]
    body = bodies[0]
    assert body["template_id"] == "d-0123456789abcdef0123456789abcdef"
    assert "content" not in body
    data = body["personalizations"][0]["dynamic_template_data"]
    assert data["title"] == "Notice of Data Breach"
    assert [s["heading"] for s in data["sections"]][:2] == CALIFORNIA[:2]
    assert data["sections"][0]["text"] == HOSTILE  # raw: Handlebars {{ }} escapes it
    assert data["subject"] == body["personalizations"][0]["subject"]
    single = notifier.build_payload(messages[0])
    assert single["template_id"] == body["template_id"] and "content" not in single


def test_payload_building_does_not_import_the_sendgrid_sdk() -> None:
    code = (
        "import sys, breach_sendgrid\n"
        "from factories import make_message\n"
        "breach_sendgrid.SendGridEmail({}).build_batch_payload([make_message()])\n"
        "assert 'sendgrid' not in sys.modules, 'sendgrid SDK imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
