"""`breach report`: the report each regime asks for, in the regulator's voice; `--check` finds
every item it must state in the incident (regulator notice, facts, audience counts, notice,
organisation, ledger) or names it; the JSON validates against the regime's shipped schema; the
HTML shows every required heading; a later phase references the earlier filing."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cli_support import run
from sqlalchemy import select

from orchestrator import shipped
from orchestrator.ledger.models import Delivery
from orchestrator.regimes import Regime, builtin_regimes
from orchestrator.reporting import write_schemas
from orchestrator.session import Breach

ROOT = Path(__file__).parent.parent
AUDIENCE = str(ROOT / "playbooks" / "examples" / "affected-people.csv")
EVERY = ROOT / "tests" / "fixtures" / "playbooks" / "every-report.yaml"


def dry_run(breach: Breach, playbook_id: str, tmp_path: Path, **drop: bool) -> str:
    playbook = breach.playbook(playbook_id)
    facts = {k: f.example for k, f in playbook.facts.items()
             if f.example is not None and k not in drop}  # fmt: skip
    return breach.trigger(playbook, audience=AUDIENCE, facts=facts, mode="dry-run",
                          outbox=tmp_path / playbook_id).incident_id  # fmt: skip


def shipped_schema(regime: str) -> dict[str, Any]:
    """The JSON Schema the package ships for ``regime``, read as a file."""
    path = ROOT / "orchestrator" / "data" / "report-schemas" / f"{regime}.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


@pytest.mark.parametrize("playbook_id", [p.id for p in shipped.playbooks()])
def test_every_shipped_playbook_gives_every_report_item(
    playbook_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Breach(db) as breach:
        incident_id = dry_run(breach, playbook_id, tmp_path)
        regulators = breach.playbook(playbook_id).regulators
    assert regulators
    for regulator in regulators:
        code, out, err = run("report", incident_id, "--regulator", regulator.id, "--check",
                             "--json", "--db", db, capsys=capsys)  # fmt: skip
        result = json.loads(out)
        assert code == 0 and result["complete"], (regulator.id, result["missing"], err)
        assert result["items"], regulator.regime  # every shipped regime lists its items
        report = result["report"]
        assert report["schema"].endswith(f"/{regulator.regime}.schema.json")
        jsonschema.validate(report, shipped_schema(regulator.regime))
        assert report["missing"] == [] and report["items"]


def test_the_shipped_schemas_are_made_from_the_regimes_table(tmp_path: Path) -> None:
    written = write_schemas(builtin_regimes(), tmp_path)
    assert written  # one per regime whose report has items
    shipped_files = sorted(p.name for p in (ROOT / "orchestrator/data/report-schemas").iterdir())
    assert sorted(written) == shipped_files
    for name in written:
        jsonschema.Draft202012Validator.check_schema(json.loads((tmp_path / name).read_text()))
        assert (tmp_path / name).read_text() == (
            ROOT / "orchestrator/data/report-schemas" / name
        ).read_text(), f"{name} is stale: regenerate with orchestrator.reporting.write_schemas"


@pytest.fixture(scope="module")
def every_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A dry run of the playbook naming every regime with report items: (db, incident)."""
    tmp = tmp_path_factory.mktemp("every-report")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    with Breach(db) as breach:
        playbook = breach.playbook(str(EVERY))
        facts = {k: f.example for k, f in playbook.facts.items() if f.example is not None}
        incident = breach.trigger(playbook, audience=AUDIENCE, facts=facts, mode="dry-run",
                                  outbox=tmp / "outbox").incident_id  # fmt: skip
    return db, incident


REPORTED = [(r["id"], r["regime"]) for r in
            yaml.safe_load(EVERY.read_text("utf-8"))["regulators"]]  # fmt: skip


@pytest.mark.parametrize(("regulator", "regime"), REPORTED)
def test_each_regime_report_states_its_items_and_renders_each_heading(
    regulator: str,
    regime: str,
    every_report: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, incident = every_report
    page = tmp_path / "report.html"
    code, out, err = run("report", incident, "--regulator", regulator, "--check", "--json",
                         "--html", str(page), "--db", db, capsys=capsys)  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["complete"], (result["missing"], result["schema_errors"], err)
    report = result["report"]
    jsonschema.validate(report, shipped_schema(regime))
    spec = builtin_regimes()[regime]
    headings = _headings(page.read_text("utf-8"))
    for item, item_spec in spec.report_items.items():
        if item_spec.optional or item_spec.when:
            continue
        assert report["items"][item]["value"] not in (None, "", [], "not yet known"), item
        assert report["items"][item]["label"] in headings, (item, headings)
    assert spec.title in headings  # the report's own title heads the page


def test_the_california_sample_notice_uses_the_statutory_headings(
    every_report: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, incident = every_report
    page = tmp_path / "ca.html"
    code, out, _ = run("report", incident, "--regulator", "ca-ag", "--html", str(page),
                       "--db", db, capsys=capsys)  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["title"] == "Notice of Data Breach" and report["layout"] == "notice"
    statutory = ["What Happened", "What Information Was Involved", "What We Are Doing",
                 "What You Can Do", "For More Information"]  # fmt: skip
    h2 = _headings(page.read_text("utf-8"), tags=("h2",))
    assert [h for h in h2 if h in statutory] == statutory  # each once, in the statute's order
    # the sample copy is the notice residents got, in its own (second-person) voice
    assert report["items"]["what_you_can_do"]["value"].startswith("Be wary")


def test_a_regulator_report_speaks_in_the_regulators_voice(
    every_report: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, incident = every_report
    code, out, _ = run("report", incident, "--regulator", "dpc", "--db", db, capsys=capsys)
    assert code == 0
    items = {k: v["value"] for k, v in json.loads(out)["items"].items()}
    assert items["nature"].startswith("On 02 November 2026 an attacker used a stolen support")
    assert items["consequences"].startswith("Targeted phishing of customers")
    assert items["breach_type"] == ["confidentiality"]
    assert items["people_notified"]["by_channel"]["email"] > 0
    texts = [v for v in items.values() if isinstance(v, str)]
    assert not any(" you " in f" {t.lower()} " or "your " in t.lower() for t in texts)


def test_a_follow_up_references_the_initial_filing(
    every_report: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, incident = every_report
    with Breach(db) as breach, breach.ledger.session() as s:
        rows = s.scalars(select(Delivery).where(Delivery.incident_id == incident,
                                                Delivery.channel == "regulator"))  # fmt: skip
        deliveries = {d.step_id: {"key": d.key, "content_hash": d.content_hash} for d in rows}
    initial = deliveries["dpc-initial"]
    code, out, _ = run("report", incident, "--regulator", "dpc", "--step", "dpc-follow-up",
                       "--check", "--json", "--db", db, capsys=capsys)  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["complete"], result["missing"]
    report = result["report"]
    assert report["report_phase"] == "follow-up"
    assert report["supplements"]["delivery_id"] == initial["key"]
    assert report["supplements"]["content_hash"] == initial["content_hash"]
    assert len(initial["content_hash"]) == 64
    assert report["supplements"]["step_id"] == "dpc-initial"
    jsonschema.validate(report, shipped_schema("gdpr-art33"))
    # NIS2: the notification follows the early warning, the final report the notification
    code, out, _ = run("report", incident, "--regulator", "csirt-f", "--db", db, capsys=capsys)
    final = json.loads(out)
    assert final["report_phase"] == "final"
    assert final["supplements"]["delivery_id"] == deliveries["csirt-notification"]["key"]


def test_the_initial_filing_alone_cannot_be_a_follow_up(
    every_report: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, incident = every_report
    code, out, _ = run("report", incident, "--regulator", "csirt-ew", "--check", "--json",
                       "--db", db, capsys=capsys)  # fmt: skip
    assert code == 0 and json.loads(out)["report"]["supplements"] is None


def _headings(page: str, tags: tuple[str, ...] = ("h1", "h2", "th")) -> list[str]:
    """The text of every heading (and table header) of an HTML page."""
    parser = _Headings(tags)
    parser.feed(page)
    return parser.found


class _Headings(HTMLParser):
    def __init__(self, tags: tuple[str, ...]) -> None:
        super().__init__()
        self.tags, self.found, self.open = tags, [], ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.tags:
            self.open, self.text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == self.open:
            self.found.append(" ".join("".join(self.text).split()))
            self.open = ""

    def handle_data(self, data: str) -> None:
        if self.open:
            self.text.append(data)


def test_a_missing_fact_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Breach(db) as breach:
        incident_id = dry_run(breach, "credential-leak", tmp_path, records_count=True)
    code, out, err = run("report", incident_id, "--regulator", "ie-dpc", "--check", "--db", db,
                         "--json", capsys=capsys)  # fmt: skip
    assert code == 1
    result = json.loads(out)
    assert result["missing"] == ["approx_records"]
    item = next(i for i in result["items"] if i["item"] == "approx_records")
    assert item == {"item": "approx_records", "source": "facts.records_count", "value": None,
                    "label": "Approximate number of personal data records concerned",
                    "missing": True}  # fmt: skip
    assert result["report"]["items"]["approx_records"]["value"] == "not yet known"
    people = next(i for i in result["items"] if i["item"] == "people_notified")
    # from the ledger: people the dry run reached, per channel
    assert people["value"]["total"] > 0
    assert sum(people["value"]["by_channel"].values()) >= people["value"]["total"]
    assert set(people["value"]["by_channel"]) <= {"sms", "push", "email"}
    code, out, err = run("report", incident_id, "--regulator", "ie-dpc", "--check", "--db", db,
                         capsys=capsys)  # fmt: skip
    assert code == 1 and "missing: approx_records" in err


def test_report_needs_check_and_a_known_regulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Breach(db) as breach:
        incident_id = dry_run(breach, "credential-leak", tmp_path)
    code, out, err = run("report", incident_id, "--regulator", "ie-dpc", "--db", db,
                         capsys=capsys)  # fmt: skip
    assert code == 0 and json.loads(out)["kind"] == "gdpr-art33"  # the report itself
    code, _, err = run("report", incident_id, "--regulator", "ico", "--check", "--db", db,
                       capsys=capsys)  # fmt: skip
    assert code == 2 and "no regulator 'ico' (its regulators: ie-dpc)" in err
    code, out, _ = run("report", incident_id, "--regulator", "ie-dpc", "--check", "--db", db,
                       capsys=capsys)  # fmt: skip
    assert code == 0 and "gdpr-art33 report to ie-dpc" in out


def test_a_regimes_file_may_name_items_without_a_source(tmp_path: Path) -> None:
    override = tmp_path / "regimes.yaml"
    override.write_text("gdpr-art33:\n  name: GDPR\n  notifies: SA\n"
                        "  deadline: {amount: 72, unit: hours}\n"
                        "  report_items: [nature, counsel_opinion]\n")  # fmt: skip
    with Breach(f"sqlite:///{tmp_path / 'ledger.db'}", regimes_file=override) as breach:
        incident_id = dry_run(breach, "credential-leak", tmp_path)
        result = breach.report_check(incident_id, "ie-dpc")
    assert result["complete"]
    assert [i["source"] for i in result["items"]] == ["", ""]
    # the team's table changed the regime: its schema is made from it, not the shipped one
    assert result["report"]["items"] == {}


LIVE_PHASES = """\
id: live-phases
title: Phased report
version: 1
severity: high
organisation: {name: Meridian, contact_email: privacy@meridian.example,
               dpo: "Jo Lane, dpo@meridian.example"}
facts:
  affected_count: {type: integer, example: 1200}
  records_count: {type: integer, example: 1300}
  subject_categories: {type: list, default: [customers]}
  data_categories: {type: list, default: [name, e-mail address]}
notice:
  en:
    what_happened: An attacker copied customer records.
    impact: You may receive phishing messages.
    measures: We closed the access.
    advice: Be wary of messages asking for your password.
    contact: privacy@meridian.example
    regulator:
      nature: An attacker copied customer records from the order database.
      breach_type: [confidentiality]
      consequences: Targeted phishing of customers.
      measures_taken: The access was closed and credentials reset.
regulators:
  - {id: dpc, name: Data Protection Commission, regime: gdpr-art33}
steps:
  - {id: dpc-initial, channel: regulator, regulator: dpc, at: +0m}
  - id: dpc-follow-up
    channel: regulator
    regulator: dpc
    at: +0m
    phase: follow-up
    approval: {role: dpo}
"""


def test_a_live_follow_up_filing_names_the_initial_filing_and_its_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "filings"
    folder.mkdir()
    monkeypatch.setenv("BREACH_FILING_DIR", str(folder))
    (tmp_path / "phases.yaml").write_text(LIVE_PHASES)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Breach(db) as breach:
        facts = {"affected_count": 1200, "records_count": 1300}
        incident = breach.trigger(tmp_path / "phases.yaml", audience=AUDIENCE, facts=facts,
                                  mode="live").incident_id  # fmt: skip
        breach.run(until_idle=True)  # files the initial report; the follow-up waits for the DPO
        (initial_file,) = sorted(folder.glob("*.json"))
        breach.approve(incident, "dpc-follow-up", by="Jo Lane", as_role="dpo")
        breach.run(until_idle=True)
        with breach.ledger.session() as s:
            rows = s.scalars(select(Delivery).where(Delivery.incident_id == incident))
            filed = {d.step_id: (d.key, d.content_hash, d.provider_message_id, d.state)
                     for d in rows}  # fmt: skip
    initial = json.loads(initial_file.read_text("utf-8"))
    follow_up = json.loads((folder / f"{incident}-dpc-dpc-follow-up.json").read_text("utf-8"))
    assert initial["report_phase"] == "initial" and initial["supplements"] is None
    key, digest, reference, state = filed["dpc-initial"]
    assert state in ("sent", "delivered") and reference == initial_file.name
    assert follow_up["report_phase"] == "follow-up"
    assert follow_up["supplements"]["delivery_id"] == key
    assert follow_up["supplements"]["content_hash"] == digest
    assert follow_up["supplements"]["filing_reference"] == initial_file.name
    for report in (initial, follow_up):
        jsonschema.validate(report, shipped_schema("gdpr-art33"))
    page = (folder / f"{incident}-dpc-dpc-follow-up.html").read_text("utf-8")
    assert initial_file.name in page and digest in page


def test_a_regime_printed_as_json_reads_back_as_a_regimes_file_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run("regimes", "--json", capsys=capsys)
    assert code == 0
    printed = json.loads(out)
    assert printed["us-ca-ag"]["report_items"]["what_happened"]["from"] == "notice.what_happened"
    for key, entry in printed.items():
        assert Regime.model_validate(entry) == builtin_regimes()[key], key
