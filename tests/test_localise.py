"""Dates and numbers in a notice read as its locale writes them (Babel / CLDR)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from engine_support import NOTIFIERS

from orchestrator.localise import cldr_pattern, format_count, format_when
from orchestrator.notice import NoticeRenderer, template_context
from orchestrator.playbook import Playbook
from orchestrator.session import Breach

MOMENT = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "fmt", "expected"),
    [
        ("en", "%d %B %Y", "05 March 2026"),
        ("de", "%d. %B %Y", "05. März 2026"),
        ("fr", "%d %B %Y", "05 mars 2026"),
        ("de", "long", "5. März 2026"),
        ("ja", "long", "2026年3月5日"),
        ("pt-BR", "long", "5 de março de 2026"),
        ("en", None, "2026-03-05"),
        ("de", "%d.%m.%Y %H:%M", "05.03.2026 14:30"),
        ("xx-YY", "%d %B %Y", "05 March 2026"),  # an unknown locale reads as English
    ],
)
def test_dates(locale: str, fmt: str | None, expected: str) -> None:
    assert format_when(MOMENT, fmt, locale) == expected


def test_dates_from_text_and_plain_dates() -> None:
    assert format_when("2026-03-05", "%d %B %Y", "de") == "05 März 2026"
    assert format_when(date(2026, 3, 5), "long", "en") == "March 5, 2026"
    assert format_when("not a date", "%d %B %Y", "de") == "not a date"


@pytest.mark.parametrize(
    ("locale", "value", "expected"),
    [("en", 12345, "12,345"), ("de", 12345, "12.345"), ("de", 1234.5, "1.234,5"),
     ("fr", 12345, "12\u202f345"), ("en", "many", "many")],
)  # fmt: skip
def test_numbers(locale: str, value: object, expected: str) -> None:
    assert format_count(value, locale) == expected


def test_literal_text_in_a_format_is_kept() -> None:
    assert cldr_pattern("%d %B %Y") == "dd MMMM yyyy"
    assert format_when(MOMENT, "on %d %B at %H:%M o'clock", "en") == "on 05 March at 14:30 o'clock"


def test_a_german_notice_reads_german_dates_and_numbers() -> None:
    playbook = Playbook.model_validate({
        "id": "de-notice", "title": "Datenpanne", "version": 1, "severity": "high",
        "default_locale": "de",
        "organisation": {"name": "Beispiel GmbH", "contact_email": "datenschutz@example.de"},
        "notice": {"de": {
            "what_happened": "Ein Fehler machte Daten lesbar.",
            "impact": "Am {{ facts.seen | date('%d. %B %Y') }} ({{ facts.n | number }} "
                      "Betroffene) wurden Daten offengelegt.",
            "measures": "Wir haben die Lücke geschlossen.", "advice": "Ändern Sie Ihr Passwort.",
            "contact": "datenschutz@example.de",
        }, "en": {
            "what_happened": "A bug made data readable.",
            "impact": "On {{ facts.seen | date('%d %B %Y') }} ({{ facts.n | number }} people).",
            "measures": "Fixed.", "advice": "Change your password.", "contact": "x@example.de",
        }},
        "steps": [{"id": "s", "channel": "email", "at": "+0m"}],
    })  # fmt: skip
    renderer = NoticeRenderer(playbook)
    context = template_context(playbook=playbook, incident={},
                               facts={"seen": MOMENT, "n": 12345})  # fmt: skip
    assert renderer.render("de", context).impact == (
        "Am 05. März 2026 (12.345 Betroffene) wurden Daten offengelegt."
    )
    assert renderer.render("en", context).impact == "On 05 March 2026 (12,345 people)."


LOCALISED = """\
id: localised
title: Localised
version: 1
severity: high
organisation:
  name: Example Org
  contact_email: privacy@example.org
notice:
  en:
    what_happened: A misconfigured server made our customer records readable from the internet.
    impact: Your e-mail address was exposed.
    measures: We fixed the bug.
    advice: Watch out for phishing.
    contact: privacy@example.org
  de:
    what_happened: Ein falsch konfigurierter Server machte unsere Kundendaten im Internet lesbar.
    impact: Ihre E-Mail-Adresse wurde offengelegt.
    measures: Wir haben den Fehler behoben.
    advice: Achten Sie auf Phishing.
    contact: privacy@example.org
steps:
  - id: sms-all
    channel: sms
    notifier: standin-sms
    at: +0m
"""


def test_audience_locales_without_a_notice_are_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    (tmp_path / "localised.yaml").write_text(LOCALISED)
    people = tmp_path / "people.csv"
    rows = [("ja-JP", 2), ("ja", 1), ("de-AT", 1), ("en-US", 1), ("", 1), ("ko-KR", 1)]
    lines = ["id,phone,locale"]
    for locale, n in rows:
        lines += [f"p{len(lines)},+1415555{100 + len(lines):04d},{locale}" for _ in range(n)]
    people.write_text("\n".join(lines) + "\n")
    with Breach(f"sqlite:///{tmp_path / 'ledger.db'}", plugins_dir=NOTIFIERS) as breach:
        result = breach.trigger(tmp_path / "localised.yaml", audience=str(people),
                                mode="dry-run", outbox=tmp_path / "out")  # fmt: skip
        expected = [
            "3 people with locale ja, ja-JP would get the en notice: add a `ja` notice",
            "1 person with locale ko-KR would get the en notice: add a `ko` notice",
        ]
        assert result.summary["warnings"] == expected
        assert breach.status(result.incident_id)["warnings"] == expected
