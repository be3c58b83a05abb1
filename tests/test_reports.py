"""`breach report --check`: every item a regime's report must state is found in the incident
(facts, audience counts, notice, organisation, ledger), or named as missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run

from orchestrator import shipped
from orchestrator.session import Breach

ROOT = Path(__file__).parent.parent
AUDIENCE = str(ROOT / "playbooks" / "examples" / "affected-people.csv")


def dry_run(breach: Breach, playbook_id: str, tmp_path: Path, **drop: bool) -> str:
    playbook = breach.playbook(playbook_id)
    facts = {k: f.example for k, f in playbook.facts.items()
             if f.example is not None and k not in drop}  # fmt: skip
    return breach.trigger(playbook, audience=AUDIENCE, facts=facts, mode="dry-run",
                          outbox=tmp_path / playbook_id).incident_id  # fmt: skip


@pytest.mark.parametrize("playbook_id", [p.id for p in shipped.playbooks()])
def test_every_shipped_playbook_gives_every_report_item(playbook_id: str, tmp_path: Path) -> None:
    with Breach(f"sqlite:///{tmp_path / 'ledger.db'}") as breach:
        incident_id = dry_run(breach, playbook_id, tmp_path)
        regulators = breach.playbook(playbook_id).regulators
        assert regulators
        for regulator in regulators:
            result = breach.report_check(incident_id, regulator.id)
            assert result["complete"], (regulator.id, result["missing"])
            assert result["items"], regulator.regime  # every shipped regime lists its items


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
                    "missing": True}  # fmt: skip
    people = next(i for i in result["items"] if i["item"] == "people_notified")
    assert people["value"] > 0  # from the ledger: people the dry run reached
    code, out, err = run("report", incident_id, "--regulator", "ie-dpc", "--check", "--db", db,
                         capsys=capsys)  # fmt: skip
    assert code == 1 and "missing: approx_records" in err


def test_report_needs_check_and_a_known_regulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Breach(db) as breach:
        incident_id = dry_run(breach, "credential-leak", tmp_path)
    code, _, err = run("report", incident_id, "--regulator", "ie-dpc", "--db", db, capsys=capsys)
    assert code == 2 and "add --check" in err
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
