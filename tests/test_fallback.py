"""Fallbacks after the fact: people whose delivery failed, bounced or went unconfirmed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from engine_support import PLAYBOOK, deliveries, standin_host, trigger_live
from fixtures.server.harness import load, serving, write_config
from sqlalchemy import update

from orchestrator.dispatch import DispatchSettings
from orchestrator.ledger import DELIVERIES, Ledger
from orchestrator.pluginhost import PluginHost
from orchestrator.receipts import ReceiptOutcome, ReceiptUpdate
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import plugin_settings

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


def test_receipt_outcomes_select_the_fallback_and_reasons_are_never_parsed(
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
    sent = {d.recipient_id: (d.key, d.provider_message_id) for d in deliveries(db, incident)}
    changed = Ledger(db).apply_receipts([
        ReceiptUpdate(ReceiptOutcome.UNDELIVERED, *sent["p2"], reason="undelivered: 30003"),
        ReceiptUpdate(ReceiptOutcome.DELIVERED, *sent["p3"]),
        ReceiptUpdate("bounce", *sent["p4"], reason="mailbox full"),  # the plain word is accepted
        # a failure of another kind, worded like a bounce: `on: [bounce]` does not read reasons
        ReceiptUpdate(ReceiptOutcome.FAILED, *sent["p5"], reason="bounce: or so it says"),
        ReceiptUpdate(ReceiptOutcome.BOUNCE, provider_id="unknown-id"),  # not ours: ignored
    ])  # fmt: skip
    assert changed == 4
    Breach(db, host=host).run(FAST, until_idle=True)
    rows = {(d.step_id, d.recipient_id): d for d in deliveries(db, incident)}
    assert {r for (s, r) in rows if s.endswith("+fallback")} == {"p2", "p4"}
    outcomes = {r: rows[("sms-all", r)] for r in ("p2", "p3", "p4", "p5")}
    assert {r: (d.state, d.receipt_outcome, d.reason) for r, d in outcomes.items()} == {
        "p2": ("failed", "undelivered", "undelivered: 30003"),
        "p3": ("delivered", "delivered", None),
        "p4": ("failed", "bounce", "mailbox full"),
        "p5": ("failed", "failed", "bounce: or so it says"),
    }
    assert rows[("sms-all", "p1")].receipt_outcome is None  # no receipt yet
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


EMAIL_THEN_SMS = """
id: email-then-sms
title: Account data exposed
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
notice:
  en:
    subject: Notice of data breach
    what_happened: A misconfigured server made our customer records readable from the internet.
    impact: Your e-mail address was exposed.
    measures: We fixed the bug.
    advice: Watch out for phishing.
    contact: privacy@example.org
    sms: "Example Org: your e-mail address was exposed. Watch out for phishing."
steps:
  - id: email-all
    channel: email
    notifier: sendgrid-email
    at: +0m
    fallback: {channel: sms, notifier: twilio-sms, after: 1h, on: [bounce]}
"""


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
def test_a_sendgrid_bounce_through_the_server_sends_the_sms_fallback(
    simulator: Simulator, tmp_path: Path
) -> None:
    """SendGrid (the simulator) posts its Event Webhook to ``breach serve``'s receipt route; the
    plugin's handler reports the bounces, the ledger keeps their outcome, and only the people
    whose e-mail bounced get the SMS."""
    db = f"sqlite:///{tmp_path / 'l.db'}"
    secret = "webhook-secret-1234"
    settings = {**plugin_settings(simulator.url, simulator.config),
                "SENDGRID_WEBHOOK_SECRET": secret}  # fmt: skip
    host = PluginHost(settings=settings)
    (tmp_path / "pb.yaml").write_text(EMAIL_THEN_SMS)
    people = tmp_path / "people.csv"
    people.write_text("id,email,phone\n" + "".join(
        f"p{i},{'bounce' if i in (2, 5) else 'person'}{i}@example.org,+1415555{100 + i:04d}\n"
        for i in range(8)))  # fmt: skip
    with serving(load(write_config(tmp_path), host), db, host=host) as server:
        simulator.configure(
            "sendgrid", callback_url=f"{server.url}/receipts/sendgrid?token={secret}"
        )
        breach = Breach(db, host=host)
        playbook = tmp_path / "pb.yaml"
        incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
        breach.run(FAST, until_idle=True)
        simulator.drain()  # every event posted and answered
        assert [c.status for c in simulator.callbacks("sendgrid")] == [200, 200]
        breach.run(FAST, until_idle=True)
    rows = {(d.step_id, d.recipient_id): d for d in deliveries(db, incident)}
    email = {r: d for (s, r), d in rows.items() if s == "email-all"}
    assert {r for r, d in email.items() if d.receipt_outcome == "bounce"} == {"p2", "p5"}
    assert all(email[r].state == "failed" and (email[r].reason or "").startswith("bounce: 550")
               for r in ("p2", "p5"))  # fmt: skip
    assert {d.state for r, d in email.items() if r not in ("p2", "p5")} == {"delivered"}
    fallback = {r: d for (s, r), d in rows.items() if s == "email-all+fallback"}
    assert set(fallback) == {"p2", "p5"}
    assert all(d.channel == "sms" and d.state == "sent" for d in fallback.values())
    texted = {m.recipient for m in simulator.accepted("twilio")}
    assert texted == {"+14155550102", "+14155550105"}
