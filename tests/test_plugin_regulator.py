"""The regulator plugin: the Art. 33(3) report, lateness, phases, HTML, filing files."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import breach_regulator
import pytest
from breach_regulator import NOT_YET_KNOWN, RegulatorReport, ReportError
from factories import AWARE_AT, HOSTILE, ORGANISATION, make_incident, make_public_message

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Notifier, Outcome

ON_TIME = AWARE_AT + timedelta(hours=40)
LATE = AWARE_AT + timedelta(hours=80)


def _notifier(at: datetime = ON_TIME, folder: Path | None = None) -> RegulatorReport:
    settings = {"BREACH_FILING_DIR": str(folder)} if folder else {}
    return RegulatorReport(settings, clock=lambda: at)


def _message(**incident: Any) -> Message:
    return make_public_message(
        "regulator",
        locales=("en",),
        step_id="ico-report",
        regulator="ico",
        incident=make_incident(**incident) if incident else None,
    )


def _facts(**extra: Any) -> dict[str, Any]:
    return {**make_incident().facts, **extra}


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _html(page: str) -> _Html:
    parser = _Html()
    parser.feed(page)
    parser.close()
    return parser


def test_plugin_registers_the_regulator_notifier() -> None:
    registered: list[type[Notifier]] = []
    breach_regulator.register_notifiers(register=registered.append)
    assert registered == [RegulatorReport]
    assert (RegulatorReport.name, RegulatorReport.channel) == ("regulator-filing", "regulator")
    assert RegulatorReport.contact is None


def test_missing_settings_name_what_is_missing() -> None:
    assert RegulatorReport({}).missing_settings() == ["BREACH_FILING_DIR"]


def test_report_holds_everything_article_33_3_asks_for() -> None:
    payload = _notifier().build_payload(_message())
    assert set(payload) == {"filename", "report", "html", "warnings"}
    assert payload["filename"] == "inc-2025-0042-ico-ico-report"
    report = payload["report"]
    assert report["controller"] == {
        "name": ORGANISATION["name"],
        "address": ORGANISATION["address"],
        "email": ORGANISATION["contact_email"],
        "phone": ORGANISATION["contact_phone"],
        "website": ORGANISATION["website"],
    }
    assert report["contact_point"]["dpo"] == ORGANISATION["dpo"]
    nature = report["nature_of_breach"]
    assert nature["description"].startswith("On 12 March 2025")
    assert nature["categories_of_data_subjects"] == ["patients"]
    assert nature["approximate_number_of_data_subjects"] == 12840
    assert nature["categories_of_personal_data"] == [
        "names",
        "e-mail addresses",
        "appointment dates",
    ]
    assert nature["approximate_number_of_records"] == 15112
    assert nature["breach_started_at"] == "2025-03-12T02:10:00Z"
    assert report["likely_consequences"].startswith("You may receive")
    assert report["measures_taken_or_proposed"].startswith("We closed")
    assert report["regulator"]["name"] == "Information Commissioner's Office"
    assert report["regulator"]["regime"] == "uk-gdpr-art33"
    assert report["report_phase"] == "initial"
    assert report["timeline"] == {
        "aware_at": "2025-03-14T09:30:00Z",
        "deadline": "2025-03-17T09:30:00Z",
        "reported_at": "2025-03-16T01:30:00Z",
        "hours_after_awareness": 40.0,
        "late": False,
    }
    assert report["reasons_for_delay"] is None
    assert payload["warnings"] == []
    json.dumps(report)  # plain JSON


def test_unknown_facts_read_not_yet_known() -> None:
    report = _notifier().build_payload(_message(facts={}))["report"]
    nature = report["nature_of_breach"]
    for key in (
        "categories_of_data_subjects",
        "approximate_number_of_data_subjects",
        "categories_of_personal_data",
        "approximate_number_of_records",
        "breach_started_at",
        "breach_ended_at",
    ):
        assert nature[key] == NOT_YET_KNOWN, key


def test_counts_and_categories_accept_text_forms() -> None:
    facts = {
        "affected_count": "12,500",
        "records_count": "about 40,000",
        "data_categories": "names; addresses, phone numbers",
    }
    nature = _notifier().build_payload(_message(facts=facts))["report"]["nature_of_breach"]
    assert nature["approximate_number_of_data_subjects"] == 12500
    assert nature["approximate_number_of_records"] == "about 40,000"
    assert nature["categories_of_personal_data"] == ["names", "addresses", "phone numbers"]


def test_late_report_without_reasons_warns_the_commander() -> None:
    payload = _notifier(LATE).build_payload(_message())
    assert payload["report"]["timeline"]["late"] is True
    assert payload["report"]["reasons_for_delay"] is None
    assert any("Art. 33(1)" in w for w in payload["warnings"])
    preview = _notifier(LATE).preview_html(_message())
    assert "Before filing" in preview and "Filed after the deadline" in preview


def test_late_report_carries_the_reasons_for_delay() -> None:
    reason = "Forensic imaging took four days; police asked us to wait."
    payload = _notifier(LATE).build_payload(_message(facts=_facts(delay_reason=reason)))
    assert payload["report"]["reasons_for_delay"] == reason
    assert payload["warnings"] == []
    assert reason in "".join(_html(payload["html"]).text)


def test_on_time_report_does_not_state_a_delay_reason() -> None:
    facts = _facts(delay_reason="not needed")
    report = _notifier(ON_TIME).build_payload(_message(facts=facts))["report"]
    assert report["timeline"]["late"] is False and report["reasons_for_delay"] is None


def test_regulator_without_a_fixed_deadline_is_never_late() -> None:
    payload = _notifier(LATE).build_payload(_message(deadlines={"ico": None}))
    assert payload["report"]["timeline"]["deadline"] is None
    assert payload["report"]["timeline"]["late"] is False
    assert "No fixed deadline" in payload["html"]


@pytest.mark.parametrize(
    ("raw", "phase"),
    [(None, "initial"), ("follow_up", "follow-up"), ("Follow-up", "follow-up"), ("final", "final")],
)
def test_report_phase(raw: str | None, phase: str) -> None:
    facts = _facts(report_phase=raw, previous_report="ICO-2025-0001")
    report = _notifier().build_payload(_message(facts=facts))["report"]
    assert report["report_phase"] == phase
    assert report["supplements"] == "ICO-2025-0001"


def test_invalid_report_phase_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ReportError, match="initial, follow-up, final"):
        _notifier().build_payload(_message(facts=_facts(report_phase="interim")))


def test_follow_up_without_the_previous_report_warns() -> None:
    payload = _notifier().build_payload(_message(facts=_facts(report_phase="final")))
    assert any("previous_report" in w for w in payload["warnings"])


def test_undeclared_regulator_is_an_error() -> None:
    message = make_public_message("regulator", regulator="cnil", locales=("en",))
    with pytest.raises(ReportError, match="'cnil'"):
        _notifier().build_payload(message)


def test_html_is_printable_and_escapes_hostile_text() -> None:
    org = {**ORGANISATION, "name": HOSTILE, "dpo": HOSTILE}
    message = make_public_message(
        "regulator",
        locales=("ja",),
        regulator="ico",
        incident=make_incident(organisation=org, title=HOSTILE),
        what_happened=HOSTILE + "\x00",
        measures=HOSTILE,
    )
    payload = _notifier().build_payload(message)
    parsed = _html(payload["html"])
    assert not any(tag in ("script", "hangup") for tag, _ in parsed.tags)
    assert "".join(parsed.text).count(HOSTILE) >= 4
    assert "@page" in payload["html"] and "@media print" in payload["html"]
    assert "\x00" not in payload["html"]
    # the Japanese notice text is marked as Japanese inside the English report
    assert any(attrs.get("lang") == "ja" for _, attrs in parsed.tags)
    assert payload["report"]["incident"]["title"] == HOSTILE


def test_live_filing_writes_json_and_html(tmp_path: Path) -> None:
    notifier = _notifier(folder=tmp_path)
    message = _message()
    (receipt,) = asyncio.run(notifier.send([message], "live"))
    assert (receipt.outcome, receipt.provider_id) == (
        Outcome.SENT,
        "inc-2025-0042-ico-ico-report.json",
    )
    payload = notifier.build_payload(message)
    filed = json.loads((tmp_path / "inc-2025-0042-ico-ico-report.json").read_text())
    assert filed == payload["report"]
    assert (tmp_path / "inc-2025-0042-ico-ico-report.html").read_text() == payload["html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "inc-2025-0042-ico-ico-report.html",
        "inc-2025-0042-ico-ico-report.json",
    ]


def test_filing_again_keeps_the_first_filing_and_changes_nothing(tmp_path: Path) -> None:
    asyncio.run(_notifier(ON_TIME, tmp_path).send([_message()], "live"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # a retry hours later, past the deadline: the filing stays the on-time one
    asyncio.run(_notifier(LATE, tmp_path).send([_message()], "live"))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_filing_changed_content_again_records_the_new_time(tmp_path: Path) -> None:
    asyncio.run(_notifier(ON_TIME, tmp_path).send([_message()], "live"))
    changed = _message(facts=_facts(affected_count=20000))
    asyncio.run(_notifier(LATE, tmp_path).send([changed], "live"))
    filed = json.loads((tmp_path / "inc-2025-0042-ico-ico-report.json").read_text())
    assert filed["nature_of_breach"]["approximate_number_of_data_subjects"] == 20000
    assert filed["timeline"]["late"] is True


def test_file_names_cannot_escape_the_filing_folder(tmp_path: Path) -> None:
    message = make_public_message(
        "regulator",
        locales=("en",),
        regulator="ico",
        step_id="../../x",
        incident=make_incident(incident_id="../etc/passwd"),
    )
    (receipt,) = asyncio.run(_notifier(folder=tmp_path / "filings").send([message], "live"))
    assert receipt.provider_id == "etc-passwd-ico-x.json"
    assert all(p.parent == tmp_path / "filings" for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["dry-run", "sandbox"])
def test_dry_run_and_sandbox_write_nothing(tmp_path: Path, mode: Mode) -> None:
    (receipt,) = asyncio.run(_notifier(folder=tmp_path / "filings").send([_message()], mode))
    assert receipt.outcome is Outcome.SENT
    assert not (tmp_path / "filings").exists()


def test_invalid_report_gives_a_permanent_receipt(tmp_path: Path) -> None:
    message = _message(facts=_facts(report_phase="interim"))
    (receipt,) = asyncio.run(_notifier(folder=tmp_path).send([message], "live"))
    assert receipt.outcome is Outcome.PERMANENT and "report_phase" in (receipt.error or "")


def test_live_filing_without_a_folder_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="BREACH_FILING_DIR"):
        asyncio.run(_notifier().send([_message()], "live"))


def test_a_bad_report_phase_is_refused_when_the_incident_is_triggered(tmp_path: Path) -> None:
    """Not hours later when the filing step fires: the trigger names the fact and writes nothing
    (the CLI exits 2, a webhook answers 400)."""
    from orchestrator.errors import FactError
    from orchestrator.session import Breach

    people = tmp_path / "people.csv"
    people.write_text("id,name,email\np1,Ana,ana@example.org\n")
    with Breach(f"sqlite:///{tmp_path / 'l.db'}") as breach:
        facts = {"affected_count": 10, "report_phase": "bogus"}
        with pytest.raises(FactError, match=r"report_phase is 'bogus'.*regulator-filing"):
            breach.trigger("credential-leak", audience=str(people), facts=facts,
                           mode="dry-run", outbox=tmp_path / "out")  # fmt: skip
        assert breach.incidents() == []
        incident = breach.trigger("credential-leak", audience=str(people), mode="dry-run",
                                  facts={"affected_count": 10, "report_phase": "follow_up"},
                                  outbox=tmp_path / "out").incident_id  # fmt: skip
        with pytest.raises(FactError, match="report_phase"):
            breach.record(incident, "facts.updated", facts={"report_phase": "later"})
        assert breach.facts(incident)["report_phase"] == "follow_up"
