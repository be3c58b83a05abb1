"""A status that explains itself: gates and the roles they wait for, steps that did not fire,
reports filed against deadlines, cancelled apart from skipped, circuits, relative times."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from engine_support import NOTIFIERS, PLAYBOOK, phone_audience, standin_host, trigger_live

from orchestrator.dispatch import DispatchSettings
from orchestrator.pluginhost import PluginHost
from orchestrator.relative import relative
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

GATED = """
regulators:
  - id: ie-dpc
    name: Data Protection Commission (Ireland)
    regime: gdpr-art33
    jurisdiction: eu
    email: breaches@dataprotection.example
steps:
  - id: sms-all
    channel: sms
    notifier: null-sms
    at: +0m
  - id: never
    channel: sms
    notifier: null-sms
    at: +0m
    condition: "counts.total > 1000000"
  - id: report
    channel: regulator
    regulator: ie-dpc
    at: +0m
  - id: gated
    channel: sms
    notifier: null-sms
    at: +0m
    approval: {roles: [dpo, legal], quorum: 2}
  - id: later
    channel: sms
    notifier: null-sms
    at: +25h
"""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "now"), (25 * 60, "in 25 min"), (-3 * 3600, "3.0 h ago"), (-30 * 3600, "30 h ago"),
     (3 * 86400, "in 3.0 d")],
)  # fmt: skip
def test_relative_times(seconds: float, text: str) -> None:
    assert relative(seconds) == text


def gated_playbook(tmp_path: Path) -> Path:
    text = PLAYBOOK.read_text("utf-8")
    path = tmp_path / "gated.yaml"
    path.write_text(text[: text.index("steps:")] + GATED.lstrip(), "utf-8")
    return path


def test_status_explains_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACH_FILING_DIR", str(tmp_path / "filings"))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = PluginHost(plugins_dir=NOTIFIERS)
    people = str(phone_audience(tmp_path / "p.csv", 20))
    with Breach(db, host=host) as breach:
        incident = breach.trigger(gated_playbook(tmp_path), audience=people,
                                  mode="live").incident_id  # fmt: skip
        breach.run(until_idle=True)
        status = breach.status(incident)
    steps = {s["step"]: s for s in status["steps"]}
    assert steps["sms-all"]["deliveries"] == {"sent": 20}
    assert steps["sms-all"]["rate_per_second"] == 1_000_000.0  # null-sms's own rate
    assert steps["never"]["state"] == "not_fired"
    assert "counts.total > 1000000" in steps["never"]["why"]
    assert "total 20" in steps["never"]["why"]
    gate = steps["gated"]
    assert gate["state"] == "awaiting_approval"
    assert gate["waiting_for"]["missing"] == ["dpo", "legal"]
    assert gate["waiting_for"]["quorum"] == 2
    assert gate["why"] == "waits for approval by dpo and legal"
    assert status["next_step"] == "later"
    assert 24 * 3600 < steps["later"]["due_in_seconds"] <= 25 * 3600
    [deadline] = status["deadlines"]
    assert deadline["state"] == "filed" and deadline["filed_at"]
    assert 71 < deadline["filed_before_deadline_hours"] <= 72
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--plugins-dir", str(NOTIFIERS), "status",
         incident, "--db", db], capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    assert "waits for approval by dpo and legal" in shown
    assert "next: later in 25 h" in shown
    assert "filed now, 72.0 h before the deadline" in shown or "filed now, 71." in shown
    assert "awaiting_approval" in shown


def test_cancelled_apart_from_skipped_and_dry_run_rendered(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = PluginHost(plugins_dir=NOTIFIERS)
    people = str(phone_audience(tmp_path / "p.csv", 5))
    with Breach(db, host=host) as breach:
        playbook = _null_playbook(tmp_path)
        incident = breach.trigger(playbook, audience=people, mode="live").incident_id
        asyncio.run(_fan_out_only(breach))
        breach.cancel(incident, by="alice", reason="false alarm")
        status = breach.status(incident)
        dry = breach.trigger(playbook, audience=people, mode="dry-run", outbox=tmp_path / "out")
        dry_status = breach.status(dry.incident_id)
    assert status["steps"][0]["deliveries"] == {"cancelled": 5}
    assert dry_status["steps"][0]["deliveries"] == {"rendered": 5}


def _null_playbook(tmp_path: Path) -> Path:
    path = tmp_path / "null.yaml"
    path.write_text(PLAYBOOK.read_text("utf-8").replace("standin-sms", "null-sms"), "utf-8")
    return path


async def _fan_out_only(breach: Breach) -> None:
    """Fire the due step (its deliveries written, pending) without dispatching them."""
    engine = breach.engine()
    for step in breach.ledger.open_steps():
        await asyncio.to_thread(engine._fire, step)


def test_status_shows_the_circuit_and_its_next_probe(simulator: Simulator, tmp_path: Path) -> None:
    simulator.configure("standin", error_rate=1.0, error_statuses=(503,))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 20), host, db)
    settings = DispatchSettings(send_timeout=1.0, concurrency=1, circuit_threshold=2,
                                circuit_cooldown=0.1, circuit_max_cooldown=0.2,
                                policy=RetryPolicy(max_attempts=3, base=0.01))  # fmt: skip
    with Breach(db, host=host) as breach:
        breach.run(settings, until_idle=True)
        kinds = [e["kind"] for e in breach.timeline(incident)]
        circuit = breach.status(incident)["circuits"]["standin-sms"]
        assert circuit["trips"] >= 1 and circuit["next_probe_at"]
        # once its cooldown (0.2 s at most) has passed, the circuit lets a probe through
        probe = datetime.fromisoformat(circuit["next_probe_at"])
        time.sleep(max(0.0, (probe - datetime.now(UTC)).total_seconds()) + 0.05)
        circuit = breach.status(incident)["circuits"]["standin-sms"]
    assert "circuit.opened" in kinds
    assert circuit["state"] == "half_open"
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", incident, "--db", db, "--json"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert as_json["circuits"]["standin-sms"]["trips"] == circuit["trips"]
