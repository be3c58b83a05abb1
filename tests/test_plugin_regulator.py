"""The regulator plugin: the report a regime asks for (Art. 33(3) here), lateness, phases, HTML,
filing files."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import breach_regulator
import pytest
from breach_regulator import NOT_YET_KNOWN, RegulatorReport, ReportError
from factories import (
    AWARE_AT,
    HOSTILE,
    ORGANISATION,
    REGULATORS,
    make_incident,
    make_public_message,
)

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Notifier, Outcome
from orchestrator.reporting import validate_report

ON_TIME = AWARE_AT + timedelta(hours=40)
LATE = AWARE_AT + timedelta(hours=80)


def _notifier(at: datetime = ON_TIME, folder: Path | None = None) -> RegulatorReport:
    settings = {"BREACH_FILING_DIR": str(folder)} if folder else {}
    return RegulatorReport(settings, clock=lambda: at)


#: the notice as the regulator reads it (third person), as the playbook's `regulator:` renders
REGULATOR_TEXT: dict[str, Any] = {
    "nature": "On 12 March 2025 an attacker copied the clinic's patient database.",
    "consequences": "Patients may receive targeted phishing quoting real appointments.",
    "measures_taken": "The clinic closed the access and reset every staff credential.",
    "measures_proposed": None, "breach_type": ["confidentiality"], "data_subjects": None,
    "data_involved": None, "cause": None, "material_impact": None, "not_yet_known": None,
}  # fmt: skip
NOTIFIED = {"total": 12000, "by_channel": {"email": 11000, "sms": 1000}}


def _message(regulator_text: dict[str, Any] | None = None, **incident: Any) -> Message:
    incident.setdefault("records", {"notified": NOTIFIED})
    message = make_public_message(
        "regulator",
        locales=("en",),
        step_id="ico-report",
        regulator="ico",
        incident=make_incident(**incident),
    )
    notice = replace(message.notice, regulator=regulator_text or REGULATOR_TEXT)
    return replace(message, notice=notice, notices={"en": notice})


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
    assert report["kind"] == "uk-gdpr-art33" and report["missing"] == []
    items = {k: v["value"] for k, v in report["items"].items()}
    # Art. 33(3)(a)-(d) in the regulator's voice, never the text written for people
    assert items["nature"] == REGULATOR_TEXT["nature"]
    assert items["consequences"] == REGULATOR_TEXT["consequences"]
    assert items["measures_taken"] == REGULATOR_TEXT["measures_taken"]
    assert not any(str(v).startswith(("You ", "Your ")) for v in items.values())
    assert items["breach_type"] == ["confidentiality"]
    assert items["subject_categories"] == ["patients"]
    assert items["approx_subjects"] == 12840
    assert items["data_categories"] == ["names", "e-mail addresses", "appointment dates"]
    assert items["approx_records"] == 15112
    assert items["contact"] == ORGANISATION["dpo"]
    assert items["people_notified"] == NOTIFIED
    assert "measures_proposed" not in items  # optional and not given: left out, never blank
    assert "lead_authority" not in items  # asked for only in a cross-border case
    assert report["breach_period"]["started_at"] == "2025-03-12T02:10:00Z"
    assert report["regulator"]["name"] == "Information Commissioner's Office"
    assert report["regulator"]["regime"] == "uk-gdpr-art33"
    assert report["report_phase"] == "initial" and report["supplements"] is None
    assert report["timeline"] == {
        "aware_at": "2025-03-14T09:30:00Z",
        "deadline": "2025-03-17T09:30:00Z",
        "reported_at": "2025-03-16T01:30:00Z",
        "hours_after_awareness": 40.0,
        "late": False,
    }
    assert report["reasons_for_delay"] is None
    assert payload["warnings"] == []
    assert validate_report(report) == []
    json.dumps(report)  # plain JSON


def test_a_cross_border_case_names_its_lead_authority() -> None:
    regulators = {"ico": {**REGULATORS["ico"], "lead_authority": "Data Protection Commission"}}
    report = _notifier().build_payload(
        _message(facts=_facts(cross_border=True), regulators=regulators)
    )["report"]
    assert report["items"]["lead_authority"]["value"] == "Data Protection Commission"
    unnamed = _notifier().build_payload(_message(facts=_facts(cross_border=True)))
    assert unnamed["report"]["missing"] == ["lead_authority"]


def test_unknown_facts_are_named_and_read_not_yet_known() -> None:
    payload = _notifier().build_payload(_message(facts={}))
    report = payload["report"]
    assert report["missing"] == ["subject_categories", "approx_subjects", "approx_records"]
    for key in report["missing"]:
        assert report["items"][key]["value"] == NOT_YET_KNOWN, key
    assert report["breach_period"] == {"started_at": NOT_YET_KNOWN, "ended_at": NOT_YET_KNOWN}
    named = "subject_categories, approx_subjects, approx_records"
    assert any(named in w for w in payload["warnings"])
    errors = validate_report(report)
    assert errors and all(e.startswith(("items.", "missing")) for e in errors)
    text = "".join(_html(payload["html"]).text)
    assert "Not yet stated: subject_categories, approx_subjects, approx_records" in text


def test_counts_and_categories_accept_text_forms() -> None:
    facts = {
        "affected_count": "12,500",
        "records_count": "about 40,000",
        "data_categories": "names; addresses, phone numbers",
    }
    items = _notifier().build_payload(_message(facts=facts))["report"]["items"]
    assert items["approx_subjects"]["value"] == 12500
    assert items["approx_records"]["value"] == "about 40,000"
    # categories may come from prose (notice.data_involved): a text is kept as written
    assert items["data_categories"]["value"] == "names; addresses, phone numbers"


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
    assert report["supplements"] == {"filing_reference": "ICO-2025-0001"}


def test_invalid_report_phase_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ReportError, match="initial, follow-up, final"):
        _notifier().build_payload(_message(facts=_facts(report_phase="interim")))


def test_follow_up_without_the_previous_filing_names_it() -> None:
    payload = _notifier().build_payload(_message(facts=_facts(report_phase="final")))
    assert payload["report"]["missing"] == ["previous_filing"]
    assert any("previous_filing" in w for w in payload["warnings"])


def test_a_later_phase_references_the_earlier_filing_from_the_ledger() -> None:
    earlier = {"delivery_id": "k-initial", "step_id": "ico-initial", "regulator": "ico",
               "content_hash": "a" * 64, "filing_reference": "inc-2025-0042-ico-ico-initial.json",
               "filed_at": "2025-03-15T10:00:00Z"}  # fmt: skip
    other = {**earlier, "delivery_id": "k-other", "step_id": "cnil-report", "regulator": "cnil"}
    regulators = {"ico": {**REGULATORS["ico"], "phases": {"ico-report": "follow-up"}}}
    message = _message(regulators=regulators,
                       records={"notified": NOTIFIED, "filings": [earlier, other]})  # fmt: skip
    payload = _notifier().build_payload(message)
    report = payload["report"]
    assert report["report_phase"] == "follow-up"
    assert report["supplements"] == earlier
    assert validate_report(report) == []
    text = "".join(_html(payload["html"]).text)
    assert "k-initial" in text and "a" * 64 in text


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
    assert filed["items"]["approx_subjects"]["value"] == 20000
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
