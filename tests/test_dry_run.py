"""Dry-run: every message rendered into the outbox, recorded in the ledger, no network at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.pluginhost import PluginHost
from orchestrator.session import Breach
from orchestrator.synthetic import generate_audience

ROOT = Path(__file__).parent.parent
PLAYBOOKS = ROOT / "playbooks"
FACTS = {
    "credential-leak": {"affected_count": "3000"},
    "payment-data-exfiltration": {"affected_count": "3000", "cards_affected": "1200",
                                  "texans_affected": "300"},
    "ransomware-unknown-scope": {"exfiltration_confirmed": "true"},
    "processor-breach": {"processor_name": "PayStream Ltd", "affected_count": "3000",
                         "processor_notified_at": "2026-11-24T16:00:00Z"},
}  # fmt: skip
#: a network guard installed before anything is imported: any socket use aborts the process
NO_NETWORK = """
import sys
def guard(event, args):
    if event.startswith("socket.") or event in ("urllib.Request", "http.client.connect"):
        raise SystemExit(f"NETWORK USED: {event} {args!r}")
sys.addaudithook(guard)
from orchestrator.commands import main
main()
"""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def audience(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aud") / "people.csv"
    generate_audience(path, 3000, seed=7)
    return path


@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS.glob("*.yaml")), ids=lambda p: p.stem)
def test_dry_run_of_each_playbook_opens_no_socket(
    playbook: Path, audience: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    args = [
        "trigger",
        str(playbook),
        "--audience",
        str(audience),
        "--dry-run",
        "--outbox",
        str(outbox),
        "--db",
        f"sqlite:///{tmp_path / 'ledger.db'}",
        "--json",
    ]
    for key, value in FACTS[playbook.stem].items():
        args += ["--fact", f"{key}={value}"]
    run = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert "NETWORK USED" not in run.stdout + run.stderr
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary == json.loads((outbox / "summary.json").read_text("utf-8"))
    people = summary["audience"]["people"]
    assert people == 3000
    notices = {n["id"]: n for n in read_jsonl(outbox / "notices.jsonl")}
    for step in summary["steps"]:
        if not step["fired"]:
            continue
        states = step["states"]
        if step["channel"] in ("announcement", "regulator"):
            assert sum(states.values()) == 1
            continue
        # every person ends as exactly one delivery row of this step: sent or skipped
        assert sum(states.values()) == people, step
        assert sum(step["skipped_reasons"].values()) == states.get("skipped", 0)
    per_channel: Counter[str] = Counter()
    for channel, info in summary["channels"].items():
        records = read_jsonl(outbox / f"{channel}.jsonl")
        assert len(records) == info["messages"]
        per_channel[channel] = len(records)
        # one message per (recipient, step) on each channel, never two
        keys = Counter((r["step"], r["recipient"]) for r in records)
        assert max(keys.values()) == 1
        for record in records:
            notice = notices[record["notice"]]
            for field in ("impact", "measures", "advice", "contact"):
                assert notice[field].strip(), (channel, field)
    assert list((outbox / "previews").glob("*.html"))


def test_counts_and_messages_in_detail(audience: Path, tmp_path: Path) -> None:
    host = PluginHost()
    result = Breach(f"sqlite:///{tmp_path / 'l.db'}", host=host).trigger(
        PLAYBOOKS / "credential-leak.yaml",
        audience=str(audience),
        facts={"affected_count": "3000", "reset_url": "{{ 7 * 7 }} <b>x</b>"},
        outbox=tmp_path / "out",
    )
    steps = {s["step"]: s for s in result.summary["steps"]}
    sms = read_jsonl(tmp_path / "out/sms.jsonl")
    # Fact values are data: the text of a fact is never evaluated as a template.
    assert all("{{ 7 * 7 }} <b>x</b>" in r["payload"]["form"]["Body"] for r in sms)
    assert not any("49" in r["payload"]["form"]["Body"].split("at")[-1][:5] for r in sms)
    assert steps["sms-now"]["skipped_reasons"].get("no phone number", 0) > 0
    emails = read_jsonl(tmp_path / "out/email.jsonl")
    # the e-mail step never writes to people whose credentials were breached
    with (audience).open(encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    assert "credentials_breached" in header
    excluded = steps["email-safe"]["skipped_reasons"]["excluded by the step's recipients rule"]
    assert (
        excluded > 0 and len(emails) + sum(steps["email-safe"]["skipped_reasons"].values()) == 3000
    )
    # The regulator step is deadline-relative: 72 h GDPR clock less a 12 h margin.
    assert steps["dpc-report"]["offset"] == "2d12h"
    assert steps["dpc-report"]["note"].startswith("needs approval by dpo")
    deadline = result.summary["deadlines"][0]
    assert deadline["hours_after_awareness"] == 72.0
    # the ledger holds the same numbers, and `status` reads them back
    status = Breach(f"sqlite:///{tmp_path / 'l.db'}").status(result.incident_id)
    by_step = {s["step"]: s for s in status["steps"]}
    states = steps["sms-now"]["states"]
    rendered = {("rendered" if k == "sent" else k): v for k, v in states.items()}
    assert by_step["sms-now"]["deliveries"] == rendered  # status says what a dry run did
    assert by_step["sms-now"]["state"] == "done"


def test_observers_and_vetoes_from_plugins_dir(audience: Path, tmp_path: Path) -> None:
    host = PluginHost(plugins_dir=Path(__file__).parent / "plugins")
    result = Breach(f"sqlite:///{tmp_path / 'l.db'}", host=host).trigger(
        PLAYBOOKS / "ransomware-unknown-scope.yaml",
        audience=str(audience),
        facts={},
        outbox=tmp_path / "out",
    )
    observer = sys.modules["breach_local_observer"]
    kinds = [e.kind for e in observer.seen if e.incident_id == result.incident_id]
    assert kinds[0] == "incident.triggered" and kinds[-1] == "incident.finished"
    assert kinds.count("step.not_fired") == 2  # exfiltration not confirmed: e-mail, push wait
    assert "step.done" in kinds
    steps = {s["step"]: s for s in result.summary["steps"]}
    assert steps["email-if-confirmed"]["fired"] is False
    # the veto plugin holds back ids ending in 7 — on the public notice nothing is vetoed
    assert steps["public-statement"]["states"] == {"sent": 1}


def test_veto_skips_with_reason(audience: Path, tmp_path: Path) -> None:
    host = PluginHost(plugins_dir=Path(__file__).parent / "plugins")
    result = Breach(f"sqlite:///{tmp_path / 'l.db'}", host=host).trigger(
        PLAYBOOKS / "credential-leak.yaml",
        audience=str(audience),
        facts={"affected_count": "3000"},
        outbox=tmp_path / "out",
    )
    sms = {s["step"]: s for s in result.summary["steps"]}["sms-now"]
    vetoed = sms["skipped_reasons"].get("vetoed: recipient asked for postal notice only", 0)
    assert vetoed > 0
    records = read_jsonl(tmp_path / "out/sms.jsonl")
    assert not any(r["recipient"].endswith("7") for r in records)


def test_bad_rows_are_kept_and_reported(tmp_path: Path) -> None:
    """Duplicate ids, malformed rows, bad numbers: each ends as a skipped row with its reason."""
    audience = tmp_path / "people.csv"
    audience.write_bytes(
        "\ufeffid,name,email,phone,locale,region\r\n"
        "a1,Ana,ana@example.org,+14155550101,en,US\r\n"
        'a2,"Bo\r\nBerg",bo@example.org,+14155550102,en,US\r\n'
        "a1,Ana again,ana2@example.org,+14155550103,en,US\r\n"
        "a3,山田 太郎,taro@example.jp,090-1234-5678,ja,JP\r\n"
        "a4,Bad Phone,,12,en,US\r\n"
        "a5,too,many,fields,here,x,y,z\r\n".encode()
    )
    result = Breach(f"sqlite:///{tmp_path / 'l.db'}").trigger(
        ROOT / "tests/fixtures/playbooks/minimal.yaml",
        audience=str(audience),
        facts={"affected_count": "6"},
        outbox=tmp_path / "out",
    )
    step = {s["step"]: s for s in result.summary["steps"]}["sms-all"]
    assert step["people"] == 6 and sum(step["states"].values()) == 6
    assert step["states"] == {"sent": 3, "skipped": 3}
    assert step["channels"] == {"sms": 3}
    reasons = step["skipped_reasons"]
    assert reasons["duplicate recipient id in the audience"] == 1
    assert any(r.startswith("malformed row") for r in reasons)
    assert any(r.startswith("invalid phone number") for r in reasons)
    sms = read_jsonl(tmp_path / "out/sms.jsonl")
    assert sorted(r["recipient"] for r in sms) == ["a1", "a2", "a3"]
    by_id = {r["recipient"]: r["payload"]["form"]["To"] for r in sms}
    assert by_id == {"a1": "+14155550101", "a2": "+14155550102", "a3": "+819012345678"}
    status = Breach(f"sqlite:///{tmp_path / 'l.db'}").status(result.incident_id)
    counts = {s["step"]: s["deliveries"] for s in status["steps"]}
    assert counts["sms-all"] == {"rendered": 3, "skipped": 3}  # a dry run sends nothing
