"""The delivery engine against the provider simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from engine_support import (
    PLAYBOOK,
    deliveries,
    phone_audience,
    standin_host,
    states,
    trigger_live,
)  # fmt: skip
from sqlalchemy import update

from orchestrator.dispatch import DispatchSettings
from orchestrator.errors import BreachError, ConfigurationError
from orchestrator.ledger import DELIVERIES, Ledger
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

FAST = DispatchSettings(send_timeout=1.0, lease_seconds=5.0, concurrency=8,
                        policy=RetryPolicy(max_attempts=30, base=0.02, cap=0.5),
                        circuit_threshold=1000)  # fmt: skip


@pytest.fixture
def db(ledger_url: str) -> str:
    return ledger_url


def test_faulty_provider_campaign_reaches_everyone(
    simulator: Simulator, tmp_path: Path, db: str
) -> None:
    """10 % 5xx, 5 % 429 with Retry-After, 2 % timeouts: 20,000 people, all sent exactly once."""
    simulator.configure("standin", error_rate=0.10, throttle_rate=0.05, retry_after=0.05,
                        timeout_rate=0.02, timeout_seconds=3.0, seed=11)  # fmt: skip
    host = standin_host(simulator.url)
    audience = phone_audience(tmp_path / "people.csv", 20_000)
    incident = trigger_live(tmp_path, audience, host, db)
    report = Breach(db, host=host).run(FAST, until_idle=True)
    assert states(db, incident) == Counter({"sent": 20_000})
    assert report.counts["retried"] > 0
    status = Breach(db).status(incident)
    assert status["state"] == "finished" and status["people"] == 20_000
    assert status["steps"][0]["state"] == "done"
    assert sum(status["steps"][0]["deliveries"].values()) == 20_000
    accepted = Counter(m.delivery_id for m in simulator.accepted("standin"))
    keys = {d.key for d in deliveries(db, incident)}
    assert set(accepted) == keys  # the provider got every message, and nothing else
    outcomes = Counter(r.outcome for r in simulator.requests("standin"))
    assert outcomes["error"] and outcomes["throttled"] and outcomes["timeout"]


def test_permanent_failures_are_not_retried(simulator: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    audience = tmp_path / "people.csv"
    audience.write_text("id,phone\nok1,+14155550101\nbad,+14155550102\nok2,+14155550103\n")
    incident = trigger_live(tmp_path, audience, host, db)
    # Fan the step out without sending, then point one delivery at an address the stand-in
    # refuses ("invalid..."), as a provider refuses a number it knows to be dead.
    campaign = Breach(db, host=host).engine().campaign(incident)
    campaign.run_step(campaign.playbook.steps[0], datetime.now(UTC))
    with Ledger(db).engine.begin() as c:
        c.execute(update(DELIVERIES).where(DELIVERIES.c.recipient_id == "bad")
                  .values(contact="invalid-number"))  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    rows = {d.recipient_id: d for d in deliveries(db, incident)}
    assert rows["bad"].state == "failed" and rows["bad"].attempts == 1
    assert "invalid recipient" in (rows["bad"].reason or "")
    assert rows["ok1"].state == rows["ok2"].state == "sent"


def test_dead_after_last_attempt_with_reason(simulator: Simulator, tmp_path: Path) -> None:
    simulator.configure("standin", error_rate=1.0, error_statuses=(503,))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    audience = phone_audience(tmp_path / "p.csv", 5)
    incident = trigger_live(tmp_path, audience, host, db)
    settings = DispatchSettings(send_timeout=1.0, policy=RetryPolicy(max_attempts=3, base=0.01),
                                circuit_threshold=1000)  # fmt: skip
    Breach(db, host=host).run(settings, until_idle=True)
    rows = deliveries(db, incident)
    assert {d.state for d in rows} == {"dead"}
    assert all(d.attempts == 3 and d.reason == "gave up after 3 attempts: HTTP 503" for d in rows)


def test_live_refuses_without_credentials(tmp_path: Path) -> None:
    host = standin_host("")
    os.environ.pop("STANDIN_URL", None)
    from engine_support import NOTIFIERS

    from orchestrator.pluginhost import PluginHost

    host = PluginHost(plugins_dir=NOTIFIERS, settings={})
    with pytest.raises(ConfigurationError, match="standin-sms: STANDIN_URL"):
        trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 2), host,
                     f"sqlite:///{tmp_path / 'l.db'}")  # fmt: skip


def test_approval_gate_waits_for_a_named_person(simulator: Simulator, tmp_path: Path) -> None:
    playbook = tmp_path / "gated.yaml"
    playbook.write_text(PLAYBOOK.read_text().replace(
        "    at: +0m\n", "    at: +0m\n    approval: {role: dpo}\n"))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 30), host, db,
                            playbook=playbook)  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    assert Breach(db).status(incident)["steps"][0]["state"] == "awaiting_approval"
    assert deliveries(db, incident) == [] and simulator.accepted("standin") == []
    with pytest.raises(BreachError, match="--by"):
        Breach(db).approve(incident, "sms-all", by=" ")
    Breach(db).approve(incident, "sms-all", by="Dana Ortiz (DPO)")
    Breach(db, host=host).run(FAST, until_idle=True)
    assert states(db, incident) == Counter({"sent": 30})
    approved = [e for e in Breach(db).timeline(incident) if e["kind"] == "step.approved"]
    assert approved[0]["actor"] == "Dana Ortiz (DPO)"


def test_cancel_stops_pending_work(simulator: Simulator, tmp_path: Path) -> None:
    playbook = tmp_path / "later.yaml"
    playbook.write_text(PLAYBOOK.read_text().replace("at: +0m", "at: +1h"))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 10), host, db,
                            playbook=playbook)  # fmt: skip
    result = Breach(db).cancel(incident, by="ic", reason="false alarm")
    assert result["skipped"] == 0
    Breach(db, host=host).run(FAST, until_idle=True)
    status = Breach(db).status(incident)
    assert status["state"] == "cancelled" and status["steps"][0]["state"] == "cancelled"
    assert simulator.accepted("standin") == []


def test_restart_runs_late_steps_or_records_them_missed(
    simulator: Simulator, tmp_path: Path
) -> None:
    playbook = tmp_path / "two.yaml"
    text = PLAYBOOK.read_text() + (
        "  - id: skip-if-late\n    channel: sms\n    notifier: standin-sms\n    at: +1h\n"
        "    misfire: skip\n"
    )
    playbook.write_text(text)
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    aware = datetime.now(UTC) - timedelta(days=1)  # everything came due while nothing ran
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 10), host, db,
                            playbook=playbook, aware_at=aware)  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    steps = {s["step"]: s for s in Breach(db).status(incident)["steps"]}
    assert steps["sms-all"]["state"] == "done"  # run_late (the default)
    assert steps["skip-if-late"]["state"] == "missed"
    assert any(e["kind"] == "step.missed" for e in Breach(db).timeline(incident))


def test_redirect_sends_everything_to_test_recipients(simulator: Simulator, tmp_path: Path) -> None:
    redirect = tmp_path / "testers.txt"
    redirect.write_text("# staging phones\n+14155550150\n+14155550151\nqa@example.org\n")
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 40), host, db,
                            redirect_to=redirect)  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    assert {m.recipient for m in simulator.accepted("standin")} == {"+14155550150", "+14155550151"}
    assert Breach(db).status(incident)["redirected"] is True
    assert json.loads(json.dumps(Breach(db).status(incident)))["people"] == 40
