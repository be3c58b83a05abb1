"""Builders of test objects: recipients, rendered notices, incidents and messages.

Every builder returns a realistic default and takes keyword overrides, so a test states only what
it is about::

    msg = make_message(channel="sms", notice=make_notice(sms=HOSTILE))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.audience import Recipient
from orchestrator.message import IncidentContext, Message, RenderedNotice

#: Text that breaks naive HTML, XML, CDATA and attribute handling all at once.
HOSTILE = "<script>alert('x')</script> ]]> & \"quoted\" 'single' </Say><Hangup/> {{ 7*7 }}"

AWARE_AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)

ORGANISATION: dict[str, Any] = {
    "name": "Example Health Ltd",
    "contact_email": "privacy@example-health.test",
    "contact_phone": "+44 20 7946 0000",
    "website": "https://example-health.test",
    "dpo": "Dana Ortiz, dpo@example-health.test",
    "address": "1 Example Street, London EC1A 1AA",
}

REGULATORS: dict[str, dict[str, Any]] = {
    "ico": {
        "name": "Information Commissioner's Office",
        "regime": "uk-gdpr-art33",
        "jurisdiction": "GB",
        "email": "casework@ico.test",
        "url": "https://ico.test/report",
    },
}

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Important: your data was involved in a security incident",
        "what_happened": "On 12 March 2025 an attacker copied part of our patient database.",
        "data_involved": "Names, e-mail addresses and appointment dates.",
        "impact": "You may receive convincing phishing messages that mention your appointments.",
        "measures": "We closed the access path, reset credentials and informed the regulator.",
        "advice": "Be wary of messages asking for payment. We will never ask for your password.",
        "contact": "Call 0800 000 000 (free) or write to privacy@example-health.test.",
    },
    "ja": {
        "subject": "重要：セキュリティインシデントに関するお知らせ",
        "what_happened": "2025年3月12日、攻撃者が患者データベースの一部を複製しました。",
        "data_involved": "氏名、メールアドレス、予約日。",
        "impact": "予約に言及した巧妙なフィッシングメッセージが届く可能性があります。",
        "measures": "侵入経路を遮断し、認証情報をリセットし、監督当局に報告しました。",
        "advice": "支払いを求めるメッセージにご注意ください。パスワードを尋ねることはありません。",
        "contact": "0800 000 000（無料）までお電話ください。",
    },
    "ar": {
        "subject": "مهم: تأثرت بياناتك بحادث أمني",
        "what_happened": "في 12 مارس 2025 نسخ مهاجم جزءًا من قاعدة بيانات المرضى.",
        "data_involved": "الأسماء وعناوين البريد الإلكتروني ومواعيد الزيارات.",
        "impact": "قد تتلقى رسائل احتيالية مقنعة تذكر مواعيدك.",
        "measures": "أغلقنا مسار الوصول وأعدنا تعيين بيانات الاعتماد وأبلغنا الجهة الرقابية.",
        "advice": "احذر من الرسائل التي تطلب الدفع. لن نطلب كلمة مرورك أبدًا.",
        "contact": "اتصل بالرقم 0800 000 000 مجانًا.",
    },
}


#: the notice of the small test playbooks, per locale: every required part, and an SMS
_PLAYBOOK_NOTICE: dict[str, dict[str, str]] = {
    "en": {
        "what_happened": "A misconfigured server made our customer records readable from the "
        "internet.",
        "impact": "Your e-mail address was exposed.",
        "measures": "We fixed the bug.",
        "advice": "Watch out for phishing.",
        "contact": "privacy@example.org",
        "sms": "{org}: your e-mail address was exposed. privacy@example.org",
    },
    "de": {
        "what_happened": "Ein falsch konfigurierter Server machte unsere Kundendaten im Internet "
        "lesbar.",
        "impact": "Ihre E-Mail-Adresse wurde offengelegt.",
        "measures": "Wir haben den Fehler behoben.",
        "advice": "Achten Sie auf Phishing.",
        "contact": "privacy@example.org",
        "sms": "{org}: Ihre E-Mail-Adresse wurde offengelegt. privacy@example.org",
    },
}


def notice_yaml(*locales: str, organisation: str = "Example Org") -> str:
    """The ``notice:`` block of a small test playbook, in ``locales`` (default en), each with
    every required part and an SMS naming ``organisation``; paste it between the playbook's
    other keys (``HEAD + notice_yaml("en", "de") + STEPS``).
    """
    lines = ["notice:"]
    for locale in locales or ("en",):
        lines.append(f"  {locale}:")
        for key, text in _PLAYBOOK_NOTICE[locale].items():
            value = json.dumps(text.format(org=organisation), ensure_ascii=False)
            lines.append(f"    {key}: {value}")
    return "\n".join(lines) + "\n"


def make_recipient(**overrides: Any) -> Recipient:
    """An affected person reachable on every channel, English-speaking by default."""
    values: dict[str, Any] = {
        "id": "r-0001",
        "row": 1,
        "name": "Alex Example",
        "email": "alex@example.test",
        "phone": "+447700900123",
        "push_token": "fcm-token-0001",
        "locale": "en-GB",
        "region": "GB",
    }
    values.update(overrides)
    return Recipient(**values)


def make_notice(locale: str = "en", **overrides: Any) -> RenderedNotice:
    """A fully rendered notice; ``locale`` picks sample text (en, ja, ar; others reuse en)."""
    texts = dict(_TEXTS.get(locale.split("-")[0], _TEXTS["en"]))
    values: dict[str, Any] = {
        "locale": locale,
        **texts,
        "sms": f"{texts['impact']} {texts['advice']} {texts['contact']}",
        "push": texts["impact"],
        "call": "\n\n".join(texts[k] for k in ("impact", "measures", "advice", "contact")),
    }
    values.update(overrides)
    return RenderedNotice(**values)


def make_incident(**overrides: Any) -> IncidentContext:
    """An incident in dry-run mode with the ICO as regulator and a 72-hour deadline."""
    values: dict[str, Any] = {
        "incident_id": "inc-2025-0042",
        "playbook_id": "patient-data-leak",
        "playbook_version": "3",
        "title": "Patient database copied",
        "severity": "high",
        "aware_at": AWARE_AT,
        "facts": {
            "affected_count": 12840,
            "records_count": 15112,
            "data_categories": ["names", "e-mail addresses", "appointment dates"],
            "subject_categories": ["patients"],
            "breach_started": "2025-03-12T02:10:00+00:00",
            "breach_ended": "2025-03-13T18:00:00+00:00",
        },
        "organisation": dict(ORGANISATION),
        "mode": "dry-run",
        "regulators": {k: dict(v) for k, v in REGULATORS.items()},
        "deadlines": {"ico": AWARE_AT + timedelta(hours=72)},
    }
    values.update(overrides)
    return IncidentContext(**values)


def make_message(
    channel: str = "email",
    *,
    delivery_id: str = "d-0001",
    step_id: str = "notify-email",
    incident: IncidentContext | None = None,
    notice: RenderedNotice | None = None,
    recipient: Recipient | None = None,
    address: str | None = None,
    notices: Mapping[str, RenderedNotice] | None = None,
    regulator: str | None = None,
    status_callback: str | None = None,
) -> Message:
    """One message for one delivery; the address defaults to the recipient's contact."""
    notice = notice or make_notice()
    recipient = recipient or make_recipient()
    contact = {"sms": "phone", "call": "phone", "email": "email", "push": "push_token"}
    if address is None and channel in contact:
        address = getattr(recipient, contact[channel])
    return Message(
        delivery_id=delivery_id,
        step_id=step_id,
        channel=channel,
        incident=incident or make_incident(),
        notice=notice,
        recipient=recipient,
        address=address,
        notices=dict(notices or {}),
        regulator=regulator,
        status_callback=status_callback,
    )


def make_public_message(
    channel: str = "announcement",
    *,
    locales: tuple[str, ...] = ("en", "ja", "ar"),
    step_id: str = "public-notice",
    incident: IncidentContext | None = None,
    regulator: str | None = None,
    **notice_overrides: Any,
) -> Message:
    """An incident-scope message (announcement, regulator): no recipient, every locale."""
    notices = {loc: make_notice(loc, **notice_overrides) for loc in locales}
    return Message(
        delivery_id=f"d-{step_id}",
        step_id=step_id,
        channel=channel,
        incident=incident or make_incident(),
        notice=notices[locales[0]],
        recipient=None,
        address=None,
        notices=notices,
        regulator=regulator,
    )


@dataclass
class Recorded:
    """One request a :func:`recording_server` received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """The loopback server's address, what it answers, and what it received."""

    url: str
    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)


@contextmanager
def recording_server(
    status: int = 200, reply: Mapping[str, Any] | None = None
) -> Iterator[Recorder]:
    """A 127.0.0.1 HTTP server that records every request and answers ``status`` + JSON ``reply``.

    Lets a test run a provider SDK for real and compare what it put on the wire with a payload.
    """
    recorder = Recorder(url="", status=status, reply=dict(reply or {}))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorder.requests.append(
                Recorded("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
            )
            data = json.dumps(recorder.reply).encode()
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
