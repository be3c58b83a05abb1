"""Statutory clocks: every regime's due moment from its starting event, in its own time zone
with its own public holidays; events recorded on an incident start the clocks that wait for them.

Not legal advice: these pin what the regimes table says, computed the way the README explains.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_support import run
from engine_support import NOTIFIERS, phone_audience
from factories import notice_yaml

from orchestrator.clocks import due_at, regime_due
from orchestrator.errors import BreachError
from orchestrator.regimes import Deadline, builtin_regimes
from orchestrator.session import Breach

# regime -> [(clock start, due moment as printed: ISO 8601 with the regime's offset)]
CASES: dict[str, list[tuple[str, str | None]]] = {
    # 72 elapsed hours across the EU change to winter time (25 Oct 2026): 09:00, not 10:00.
    "gdpr-art33": [
        ("2026-10-23T10:00:00+02:00", "2026-10-26T09:00:00+01:00"),
        ("2026-11-27T17:00:00+01:00", "2026-11-30T17:00:00+01:00"),
    ],
    "gdpr-art34": [("2026-11-27T17:00:00+01:00", None)],
    # ...and across the UK change to summer time (29 Mar 2026).
    "uk-gdpr-art33": [("2026-03-27T12:00:00+00:00", "2026-03-30T13:00:00+01:00")],
    "nis2-early-warning": [("2026-03-28T09:00:00+01:00", "2026-03-29T10:00:00+02:00")],
    "nis2-notification": [("2026-03-27T09:00:00+01:00", "2026-03-30T10:00:00+02:00")],
    # One month after the notification: month ends clamp, and a year rolls over.
    "nis2-final-report": [
        ("2026-01-31T13:00:00+01:00", "2026-02-28T23:59:59+01:00"),
        ("2026-03-31T09:00:00+02:00", "2026-04-30T23:59:59+02:00"),
        ("2027-12-15T09:00:00+01:00", "2028-01-15T23:59:59+01:00"),
    ],
    "pipl-art57": [("2026-11-30T10:00:00+08:00", None)],
    "cn-major-incident-cii": [("2026-11-30T10:00:00+08:00", "2026-11-30T11:00:00+08:00")],
    "cn-major-incident": [("2026-11-30T10:00:00+08:00", "2026-11-30T14:00:00+08:00")],
    # The day counts in California: 06:00 UTC on 2 Dec is still 1 Dec in Los Angeles.
    "us-ca-1798-82": [("2026-12-02T06:00:00+00:00", "2026-12-31T23:59:59-08:00")],
    "us-ca-ag": [("2027-01-10T09:00:00-08:00", "2027-01-25T23:59:59-08:00")],
    # Ends in summer time although it started in winter time.
    "us-ny-gbl-899aa": [("2026-03-01T12:00:00-05:00", "2026-03-31T23:59:59-04:00")],
    "us-tx-individuals": [("2026-11-01T10:00:00-06:00", "2026-12-31T23:59:59-06:00")],
    "us-tx-ag": [("2026-11-01T10:00:00-06:00", "2026-12-01T23:59:59-06:00")],
    "us-hipaa-individuals": [("2026-01-15T09:00:00-05:00", "2026-03-16T23:59:59-04:00")],
    "us-hipaa-hhs": [("2026-06-01T09:00:00-04:00", "2026-07-31T23:59:59-04:00")],
    "us-hipaa-media": [("2026-06-01T09:00:00-04:00", "2026-07-31T23:59:59-04:00")],
    "us-sec-8k-105": [
        # The afternoon before the Independence Day weekend (3 July observed): 6, 7, 8, 9 July.
        ("2026-07-02T15:30:00-04:00", "2026-07-09T23:59:59-04:00"),
        # Christmas Day is not a business day: 28, 29, 30, 31 December.
        ("2026-12-24T15:00:00-05:00", "2026-12-31T23:59:59-05:00"),
        # Thanksgiving: 27 Nov, 30 Nov, 1 and 2 Dec.
        ("2026-11-25T11:00:00-05:00", "2026-12-02T23:59:59-05:00"),
        # Friday evening in New York although Saturday in UTC.
        ("2026-12-05T02:00:00+00:00", "2026-12-10T23:59:59-05:00"),
    ],
    "sg-pdpa": [("2026-12-31T20:00:00+08:00", "2027-01-03T23:59:59+08:00")],
    "br-anpd": [
        ("2026-12-24T10:00:00-03:00", "2026-12-30T23:59:59-03:00"),  # Natal
        ("2026-04-20T10:00:00-03:00", "2026-04-24T23:59:59-03:00"),  # Tiradentes, 21 April
    ],
    "jp-appi-preliminary": [("2026-02-01T10:00:00+09:00", None)],
    "jp-appi-final": [("2026-02-01T10:00:00+09:00", "2026-03-03T23:59:59+09:00")],
    "jp-appi-final-malicious": [("2026-02-01T10:00:00+09:00", "2026-04-02T23:59:59+09:00")],
    # Australian summer time ends on 5 April 2026.
    "au-ndb-assessment": [("2026-04-04T12:00:00+11:00", "2026-05-04T23:59:59+10:00")],
    "au-ndb": [("2026-04-04T12:00:00+11:00", None)],
    "ca-pipeda": [("2026-04-04T12:00:00-04:00", None)],
}

ISSUE_IDS = {
    "gdpr-art33", "gdpr-art34", "uk-gdpr-art33", "nis2-early-warning", "nis2-notification",
    "nis2-final-report", "pipl-art57", "us-ca-1798-82", "us-ca-ag", "us-ny-gbl-899aa",
    "us-tx-individuals", "us-tx-ag", "us-hipaa-individuals", "us-hipaa-hhs", "us-hipaa-media",
    "us-sec-8k-105", "sg-pdpa", "br-anpd", "jp-appi-preliminary", "jp-appi-final",
    "au-ndb-assessment", "ca-pipeda",
}  # fmt: skip


def test_every_regime_has_a_pinned_clock_and_the_issue_ids_exist() -> None:
    table = builtin_regimes()
    assert set(CASES) == set(table)
    assert set(table) >= ISSUE_IDS
    assert all(regime.statute for regime in table.values())


@pytest.mark.parametrize(
    ("regime_id", "start", "expected"),
    [(regime, start, due) for regime, cases in CASES.items() for start, due in cases],
)
def test_regime_clock(regime_id: str, start: str, expected: str | None) -> None:
    due = regime_due(builtin_regimes()[regime_id], datetime.fromisoformat(start))
    assert (due.isoformat() if due else None) == expected


def test_clock_names_its_starting_event() -> None:
    table = builtin_regimes()
    assert table["us-sec-8k-105"].start_event == "determined"
    assert table["sg-pdpa"].start_event == "assessed"
    assert table["us-ca-1798-82"].start_event == "discovered"
    assert table["nis2-final-report"].start_event == "filed:nis2-notification"
    assert table["us-ca-ag"].start_event == "filed:us-ca-1798-82"


def test_business_days_without_a_holiday_calendar_skip_weekends_only() -> None:
    start = datetime(2026, 12, 24, 15, tzinfo=UTC)
    due = due_at(Deadline(amount=4, unit="business_days"), start)
    assert due == datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)


def test_a_regimes_file_with_an_unknown_zone_or_calendar_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "regimes.yaml"
    bad.write_text("x:\n  name: X\n  notifies: y\n  deadline: {amount: 1, unit: hours}\n"
                   "  timezone: Mars/Olympus\n")  # fmt: skip
    with pytest.raises(BreachError, match="unknown time zone 'Mars/Olympus'"):
        Breach(regimes_file=bad)
    bad.write_text("x:\n  name: X\n  notifies: y\n  deadline: {amount: 1, unit: business_days}\n"
                   "  holidays: XX\n  clock: determined\n")  # fmt: skip
    with pytest.raises(BreachError, match="regime 'x'"):
        Breach(regimes_file=bad)
    bad.write_text("x:\n  name: a: b\n")
    with pytest.raises(BreachError, match=r"regimes\.yaml:2:10: YAML syntax error"):
        Breach(regimes_file=bad)


def test_deadline_command_prints_one_due_moment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("deadline", "us-sec-8k-105", "--from", "2026-12-24T15:00:00-05:00",
                       "--json", capsys=capsys)  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["due_at"] == "2026-12-31T23:59:59-05:00"
    assert data["statute"].startswith("Form 8-K Item 1.05")
    # Without an offset the time is UTC: 20:00 UTC is 15:00 in New York.
    code, out, _ = run("deadline", "us-sec-8k-105", "--from", "2026-12-24T20:00:00", "--json",
                       capsys=capsys)  # fmt: skip
    assert json.loads(out)["due_at"] == "2026-12-31T23:59:59-05:00"
    code, out, _ = run("deadline", "gdpr-art34", "--from", "2026-12-24T20:00:00", capsys=capsys)
    assert code == 0 and "no fixed deadline" in out
    code, _, err = run("deadline", "nope", "--from", "2026-12-24T20:00:00", capsys=capsys)
    assert code == 2 and "unknown regime 'nope'" in err


def test_a_regimes_override_changes_the_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "regimes.yaml"
    override.write_text("us-sec-8k-105:\n  name: SEC (policy, 2 business days)\n  notifies: x\n"
                        "  deadline: {amount: 2, unit: business_days}\n  clock: determination\n"
                        "  timezone: America/New_York\n  holidays: US\n")  # fmt: skip
    code, out, _ = run("--regimes", str(override), "deadline", "us-sec-8k-105", "--from",
                       "2026-12-24T15:00:00-05:00", "--json", capsys=capsys)  # fmt: skip
    assert code == 0
    assert json.loads(out)["due_at"] == "2026-12-29T23:59:59-05:00"


SEC_PLAYBOOK = (
    """\
id: listed-company
title: Listed company breach
version: 1
severity: high
organisation:
  name: Example Corp
  contact_email: privacy@example.org
"""
    + notice_yaml("en", organisation="Example Corp")
    + """\
regulators:
  - id: sec
    name: Securities and Exchange Commission
    regime: us-sec-8k-105
  - id: dpc
    name: Data Protection Commission
    regime: gdpr-art33
steps:
  - id: sms-all
    channel: sms
    notifier: standin-sms
    at: +0m
"""
)


@pytest.fixture
def incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Breach, str]:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    playbook = tmp_path / "sec.yaml"
    playbook.write_text(SEC_PLAYBOOK)
    breach = Breach(f"sqlite:///{tmp_path / 'ledger.db'}", plugins_dir=NOTIFIERS)
    people = phone_audience(tmp_path / "people.csv", 3)
    aware = datetime(2026, 7, 1, 14, tzinfo=UTC)
    result = breach.trigger(playbook, audience=str(people), mode="dry-run", aware_at=aware,
                            outbox=tmp_path / "outbox")  # fmt: skip
    return breach, result.incident_id


def test_a_clock_waits_for_its_event_and_runs_once_it_is_recorded(
    incident: tuple[Breach, str],
) -> None:
    breach, incident_id = incident
    with breach:
        before = breach.status(incident_id)
        sec = next(d for d in before["deadlines"] if d["regulator"] == "sec")
        assert sec["due_at"] is None and sec["waiting_for"] == "determined"
        clocks = {c["regime"]: c for c in before["clocks"]}
        assert clocks["us-sec-8k-105"]["state"] == "waiting"
        assert clocks["gdpr-art33"]["due_at"] == "2026-07-04T16:00:00+02:00"

        at = datetime.fromisoformat("2026-07-02T15:30:00-04:00")
        breach.record_event(incident_id, "determined", at=at, by="General Counsel")
        after = breach.status(incident_id)
        clocks = {c["regime"]: c for c in after["clocks"]}
        assert clocks["us-sec-8k-105"]["due_at"] == "2026-07-09T23:59:59-04:00"
        assert clocks["us-sec-8k-105"]["started_at"] == "2026-07-02T15:30:00-04:00"
        sec = next(d for d in after["deadlines"] if d["regulator"] == "sec")
        assert sec["due_at"] == "2026-07-10T03:59:59+00:00" and sec["waiting_for"] is None
        recorded = [e for e in breach.timeline(incident_id) if e["kind"] == "incident.event"]
        assert [(e["actor"], e["detail"]["event"]) for e in recorded] == [
            ("General Counsel", "determined")
        ]

        # Recording it again corrects the time (the latest record wins, both stay on record).
        later = datetime.fromisoformat("2026-07-06T09:00:00-04:00")
        breach.record_event(incident_id, "determined", at=later, by="General Counsel")
        clocks = {c["regime"]: c for c in breach.clocks(incident_id)}
        assert clocks["us-sec-8k-105"]["due_at"] == "2026-07-10T23:59:59-04:00"


def test_events_are_refused_with_a_reason(incident: tuple[Breach, str]) -> None:
    breach, incident_id = incident
    with breach:
        with pytest.raises(BreachError, match="unknown event 'decided'"):
            breach.record_event(incident_id, "decided", by="x")
        with pytest.raises(BreachError, match="awareness is the incident's aware_at"):
            breach.record_event(incident_id, "aware", by="x")
        with pytest.raises(BreachError, match="unknown regime 'nis3'"):
            breach.record_event(incident_id, "filed:nis3", by="x")
        with pytest.raises(BreachError, match="in the future"):
            breach.record_event(incident_id, "determined", at=datetime(2999, 1, 1, tzinfo=UTC),
                                by="x")  # fmt: skip
        with pytest.raises(BreachError, match="before the incident's awareness"):
            breach.record_event(incident_id, "determined", at=datetime(2026, 6, 1, tzinfo=UTC),
                                by="x")  # fmt: skip
        with pytest.raises(BreachError, match="say who"):
            breach.record_event(incident_id, "determined", by=" ")


def test_event_command_records_and_status_shows_the_clock(
    incident: tuple[Breach, str], capsys: pytest.CaptureFixture[str]
) -> None:
    breach, incident_id = incident
    db = str(breach.db)
    breach.close()
    common = ("--plugins-dir", str(NOTIFIERS))
    code, out, _ = run(*common, "event", incident_id, "determined", "--at",
                       "2026-07-02T15:30:00-04:00", "--by", "GC", "--db", db, "--json",
                       capsys=capsys)  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["at"] == "2026-07-02T19:30:00+00:00"
    code, out, _ = run(*common, "status", incident_id, "--db", db, "--json", capsys=capsys)
    assert code == 0
    clocks = {c["regime"]: c for c in json.loads(out)["clocks"]}
    assert clocks["us-sec-8k-105"]["due_at"] == "2026-07-09T23:59:59-04:00"
    code, out, _ = run(*common, "status", incident_id, "--db", db, capsys=capsys)
    assert code == 0 and "Clocks" in out


def test_the_readme_clocks_table_is_generated_from_the_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    shown = readme.split("<!-- clocks:begin -->\n", 1)[1].split("<!-- clocks:end -->", 1)[0]
    code, out, _ = run("regimes", "--markdown", capsys=capsys)
    assert code == 0
    assert shown == out
    assert "not legal advice" in readme.split("## Statutory clocks", 1)[1].lower()
    assert all(f"| `{regime}` | {r.statute} |" in shown for regime, r in builtin_regimes().items())


LIVE_SEC = (
    SEC_PLAYBOOK
    + """\
  - id: sec-filing
    channel: regulator
    regulator: sec
    at: {before_deadline: sec, margin: 1d}
  - id: dpc-report
    channel: regulator
    regulator: dpc
    at: {before_deadline: dpc, margin: 12h}
"""
)


def test_a_live_step_before_a_waiting_deadline_waits_for_its_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BREACH_FILING_DIR", str(tmp_path / "filings"))
    (tmp_path / "sec.yaml").write_text(LIVE_SEC)
    people = phone_audience(tmp_path / "people.csv", 3)
    aware = datetime(2026, 7, 1, 14, tzinfo=UTC)
    with Breach(f"sqlite:///{tmp_path / 'ledger.db'}", plugins_dir=NOTIFIERS) as breach:
        incident_id = breach.trigger(tmp_path / "sec.yaml", audience=str(people), mode="live",
                                     aware_at=aware).incident_id  # fmt: skip
        steps = {s.step_id: s for s in breach.ledger.steps(incident_id)}
        assert (steps["sec-filing"].state, steps["sec-filing"].due_at) == ("waiting", None)
        assert steps["dpc-report"].state == "scheduled"  # GDPR counts from awareness
        assert steps["dpc-report"].due_at == datetime(2026, 7, 4, 2, tzinfo=UTC)
        # A waiting step keeps the incident open.
        assert incident_id not in breach.ledger.finish_incidents()

        at = datetime.fromisoformat("2026-07-02T15:30:00-04:00")
        result = breach.record_event(incident_id, "determined", at=at, by="General Counsel")
        # Due 9 July 23:59:59 New York time, one day earlier by its margin.
        expected = datetime(2026, 7, 9, 3, 59, 59, tzinfo=UTC)
        assert result["rescheduled"] == [{"step": "sec-filing", "due_at": expected.isoformat()}]
        filing = breach.ledger.step(incident_id, "sec-filing")
        assert (filing.state, filing.due_at) == ("scheduled", expected)
        kinds = [e["kind"] for e in breach.timeline(incident_id)]
        assert kinds[-2:] == ["incident.event", "step.rescheduled"]


def test_cancelling_an_incident_cancels_its_waiting_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BREACH_FILING_DIR", str(tmp_path / "filings"))
    (tmp_path / "sec.yaml").write_text(LIVE_SEC)
    people = phone_audience(tmp_path / "people.csv", 3)
    with Breach(f"sqlite:///{tmp_path / 'ledger.db'}", plugins_dir=NOTIFIERS) as breach:
        incident_id = breach.trigger(tmp_path / "sec.yaml", audience=str(people),
                                     mode="live").incident_id  # fmt: skip
        breach.cancel(incident_id, by="IC")
        assert breach.ledger.step(incident_id, "sec-filing").state == "cancelled"
