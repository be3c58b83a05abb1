"""Fallbacks after the fact: people whose delivery failed, bounced or went unconfirmed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine_support import PLAYBOOK, deliveries, standin_host, trigger_live
from sqlalchemy import update

from orchestrator.dispatch import DispatchSettings
from orchestrator.ledger import DELIVERIES, Ledger
from orchestrator.receipts import ReceiptUpdate
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

FAST = DispatchSettings(send_timeout=2.0, policy=RetryPolicy(max_attempts=2, base=0.01))


def audience(path: Path) -> Path:
    path.write_text("id,phone,email\n" + "".join(
        f"p{i},+1415555{100 + i:04d},p{i}@example.org\n" for i in range(10)))  # fmt: skip
    return path


def playbook(tmp_path: Path, fallback: str) -> Path:
    path = tmp_path / "fb.yaml"
    path.write_text(PLAYBOOK.read_text().replace(
        "    at: +0m\n", f"    at: +0m\n    fallback: {fallback}\n"))  # fmt: skip
    return path


def test_failed_sms_falls_back_to_email(simulator: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    pb = playbook(tmp_path, "{channel: email, notifier: null-email, on: [failed]}")
    incident = trigger_live(tmp_path, audience(tmp_path / "p.csv"), host, db, playbook=pb)
    # Fan out, then make three numbers ones the provider refuses outright.
    campaign = Breach(db, host=host).engine().campaign(incident)
    campaign.run_step(campaign.playbook.steps[0], datetime.now(UTC))
    with Ledger(db).engine.begin() as c:
        c.execute(update(DELIVERIES).where(DELIVERIES.c.recipient_id.in_(["p1", "p4", "p7"]))
                  .values(contact="invalid-number"))  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    rows = {(d.step_id, d.recipient_id): d for d in deliveries(db, incident)}
    fallback = {r for (s, r) in rows if s == "sms-all+fallback"}
    assert fallback == {"p1", "p4", "p7"}
    assert all(rows[("sms-all+fallback", r)].state == "sent" for r in fallback)
    assert all(rows[("sms-all+fallback", r)].channel == "email" for r in fallback)
    assert rows[("sms-all", "p1")].state == "failed"
    status = Breach(db).status(incident)
    assert status["state"] == "finished" and status["steps"][0]["state"] == "done"
    assert any(e["kind"] == "step.fallback" for e in Breach(db).timeline(incident))


def test_bounce_receipt_triggers_fallback_but_delivered_does_not(
    simulator: Simulator, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    pb = playbook(
        tmp_path, "{channel: email, notifier: null-email, after: 1h, on: [bounce, undelivered]}"
    )
    incident = trigger_live(tmp_path, audience(tmp_path / "p.csv"), host, db, playbook=pb)
    engine = Breach(db, host=host).engine(FAST)
    import asyncio

    asyncio.run(engine.run(until_idle=True))
    keys = {d.recipient_id: d.key for d in deliveries(db, incident)}
    Ledger(db).apply_receipts([
        ReceiptUpdate("failed", delivery_key=keys["p2"], reason="undelivered: 30003"),
        ReceiptUpdate("delivered", delivery_key=keys["p3"]),
    ])  # fmt: skip
    Breach(db, host=host).run(FAST, until_idle=True)
    rows = {(d.step_id, d.recipient_id): d for d in deliveries(db, incident)}
    assert {r for (s, r) in rows if s.endswith("+fallback")} == {"p2"}
    assert rows[("sms-all", "p3")].state == "delivered"
    assert Breach(db).status(incident)["steps"][0]["state"] == "running"  # within `after`


def test_no_receipt_waits_for_after(simulator: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    pb = playbook(tmp_path, "{channel: email, notifier: null-email, after: 2h, on: [no_receipt]}")
    incident = trigger_live(tmp_path, audience(tmp_path / "p.csv"), host, db, playbook=pb)
    Breach(db, host=host).run(FAST, until_idle=True)  # returns: nothing to do *now*
    status = Breach(db).status(incident)
    assert status["steps"][0]["state"] == "running"  # held: receipts may still come in
    assert not [d for d in deliveries(db, incident) if d.step_id.endswith("+fallback")]
    # two hours later nobody confirmed anything: everyone gets the e-mail
    with Ledger(db).engine.begin() as c:
        c.execute(
            update(DELIVERIES).values(
                sent_at=datetime(2020, 1, 1, tzinfo=UTC),
                updated_at=datetime(2020, 1, 1, tzinfo=UTC),
            )
        )
    Breach(db, host=host).run(FAST, until_idle=True)
    fallback = [d for d in deliveries(db, incident) if d.step_id.endswith("+fallback")]
    assert len(fallback) == 10 and {d.state for d in fallback} == {"sent"}
