"""Receipts are scoped to the delivery they name, and one that overtakes its send waits for it.

The rows are real: a live incident fanned out by the engine's own code, claimed as a dispatcher
claims them, and settled as it settles them.
"""

from __future__ import annotations

from pathlib import Path

from engine_support import NOTIFIERS, PLAYBOOK, deliveries, phone_audience

from orchestrator.ledger import Delivery, Ledger
from orchestrator.receipts import ReceiptOutcome, ReceiptUpdate
from orchestrator.session import Breach

NOTIFIER = "standin-sms"


def session(tmp_path: Path) -> Breach:
    return Breach(f"sqlite:///{tmp_path / 'l.db'}", plugins_dir=NOTIFIERS,
                  settings={"STANDIN_URL": "http://127.0.0.1:9"})  # fmt: skip


def claimed(tmp_path: Path, people: int = 3, breach: Breach | None = None
            ) -> tuple[Breach, str, list[str]]:  # fmt: skip
    """A live incident whose deliveries are ``sending``: claimed, not yet settled."""
    breach = breach or session(tmp_path)
    audience = phone_audience(tmp_path / f"people-{people}.csv", people)
    incident = breach.trigger(PLAYBOOK, audience=str(audience), mode="live").incident_id
    engine = breach.engine()
    step = breach.ledger.step(incident, "sms-all")
    engine.campaign(incident).run_step(
        engine.campaign(incident).playbook.steps[0], step.due_at or step.created_at
    )
    rows = breach.ledger.claim(NOTIFIER, 100, lease_seconds=60)
    return breach, incident, sorted(r["key"] for r in rows if r["incident_id"] == incident)


def settle(ledger: Ledger, key: str, state: str, provider_id: str | None = None) -> None:
    from orchestrator.ledger import now

    ledger.settle([{"key": key, "state": state, "provider_message_id": provider_id,
                    "sent_at": now() if state == "sent" else None,
                    "next_attempt_at": now() if state == "pending" else None}])  # fmt: skip


def by_key(breach: Breach, incident: str) -> dict[str, Delivery]:
    return {d.key: d for d in deliveries(str(breach.db), incident)}


def test_a_receipt_names_its_delivery_by_provider_id_and_key(tmp_path: Path) -> None:
    breach, incident, keys = claimed(tmp_path)
    ledger = breach.ledger
    for i, key in enumerate(keys):
        settle(ledger, key, "sent", f"SM{i}")
    scope = [NOTIFIER]
    assert ledger.apply_receipts([ReceiptUpdate("delivered", keys[0])], notifiers=scope) == 0
    mismatched = ReceiptUpdate("delivered", keys[0], "SM1")  # key of one, id of another
    assert ledger.apply_receipts([mismatched], notifiers=scope) == 0
    elsewhere = ReceiptUpdate("undelivered", keys[0], "SM0")
    assert ledger.apply_receipts([elsewhere], notifiers=["twilio-sms"]) == 0
    rows = by_key(breach, incident)
    assert {rows[k].state for k in keys} == {"sent"}
    assert ledger.apply_receipts([ReceiptUpdate("delivered", keys[0], "SM0"),
                                  ReceiptUpdate("undelivered", None, "SM1")],
                                 notifiers=scope) == 2  # fmt: skip
    rows = by_key(breach, incident)
    assert rows[keys[0]].state == "delivered"
    assert rows[keys[1]].state == "failed"
    assert rows[keys[2]].state == "sent"
    breach.close()


def test_a_receipt_for_another_incident_changes_nothing(tmp_path: Path) -> None:
    breach, first, first_keys = claimed(tmp_path, 2)
    settle(breach.ledger, first_keys[0], "sent", "SM-A")
    _, second, second_keys = claimed(tmp_path, 2, breach)  # another incident, same ledger
    # the second incident's delivery is still sending: the forged receipt can only be parked,
    # and the settle drops it, because the provider's id for that message is another one
    forged = ReceiptUpdate("undelivered", second_keys[0], "SM-A")
    breach.apply_receipts([forged], notifiers=[NOTIFIER])
    settle(breach.ledger, second_keys[0], "sent", "SM-B")
    first_row = by_key(breach, first)[first_keys[0]]
    second_row = by_key(breach, second)[second_keys[0]]
    assert (first_row.state, first_row.receipt_outcome) == ("sent", None)
    assert (second_row.state, second_row.receipt_outcome) == ("sent", None)
    assert second_row.provider_message_id == "SM-B"
    assert breach.apply_receipts([forged], notifiers=[NOTIFIER]) == 0  # and once settled
    breach.close()


def test_an_early_receipt_waits_for_the_settle_and_decides_it(tmp_path: Path) -> None:
    breach, incident, keys = claimed(tmp_path, 4)
    ledger = breach.ledger
    early = [
        ReceiptUpdate(ReceiptOutcome.DELIVERED, keys[0], "SM0"),
        ReceiptUpdate(ReceiptOutcome.UNDELIVERED, keys[1], "SM1", reason="undelivered: 30003"),
        ReceiptUpdate(ReceiptOutcome.DELIVERED, keys[2], "SM2"),
    ]
    assert ledger.apply_receipts(early, notifiers=[NOTIFIER]) == 3
    rows = by_key(breach, incident)
    assert {rows[k].state for k in keys} == {"sending"}
    assert ledger.apply_receipts(early[:1], notifiers=[NOTIFIER]) == 0  # parked once

    settle(ledger, keys[0], "sent", "SM0")
    settle(ledger, keys[1], "sent", "SM1")
    settle(ledger, keys[2], "sent", "SM9")  # the receipt was about another message
    settle(ledger, keys[3], "sent", "SM3")
    rows = by_key(breach, incident)
    states = {k: (rows[k].state, rows[k].receipt_outcome, rows[k].reason)
              for k in keys}  # fmt: skip
    assert states == {
        keys[0]: ("delivered", "delivered", None),
        keys[1]: ("failed", "undelivered", "undelivered: 30003"),
        keys[2]: ("sent", None, None),
        keys[3]: ("sent", None, None),
    }
    assert all(rows[k].sent_at is not None for k in keys)
    assert rows[keys[0]].provider_message_id == "SM0"
    breach.close()


def test_a_batch_settled_as_one_holds_an_early_receipt_and_evidences_every_row(
    tmp_path: Path,
) -> None:
    """An e-mail batch settles as one statement (every row: sent, the same message id). A row
    of it whose receipt came first is left to that receipt, and the batch's audit row covers
    all four, each in the state the ledger then holds."""
    from orchestrator.ledger import now

    breach, incident, keys = claimed(tmp_path, 4)
    ledger = breach.ledger
    early = ReceiptUpdate(ReceiptOutcome.BOUNCE, keys[2], "SG-batch", reason="bounce: 550")
    assert ledger.apply_receipts([early], notifiers=[NOTIFIER]) == 1
    stamp = now()
    batch = [{"key": k, "state": "sent", "provider_message_id": "SG-batch", "sent_at": stamp}
             for k in keys]  # fmt: skip
    assert ledger.settle(batch) == 4
    rows = by_key(breach, incident)
    assert [(rows[k].state, rows[k].receipt_outcome) for k in keys] == [
        ("sent", None), ("sent", None), ("failed", "bounce"), ("sent", None),
    ]  # fmt: skip
    assert ledger.settle(batch) == 0  # settled already: nothing changes twice
    [settled] = [e for e in ledger.events(incident) if e.kind == "deliveries.settled"]
    assert settled.detail["outcomes"] == {"sent": 3, "failed": 1}
    assert settled.detail["deliveries"] == 4
    assert breach.verify_audit(incident).intact
    breach.close()
