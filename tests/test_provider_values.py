"""What a provider answers never stops a settlement, and a settlement that fails anyway costs a
bounded number of sends.

A settlement that fails leaves its rows leased; once the lease runs out they are claimed and
sent again. Before these guarantees, one message id longer than the ledger's column made every
delivery of a PostgreSQL campaign go out once a lease, forever (145 times each in five
minutes), and failed every batch settled in the same write with it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from engine_support import PLAYBOOK, deliveries, phone_audience, trigger_live

from orchestrator import hookimpl
from orchestrator.dispatch import DispatchSettings
from orchestrator.errors import LedgerError
from orchestrator.ledger import Ledger
from orchestrator.limits import MAX_ERROR_CHARS, MAX_PROVIDER_ID
from orchestrator.message import Message
from orchestrator.notifier import Mode, Notifier, Outcome, Receipt
from orchestrator.pluginhost import PluginHost
from orchestrator.receipts import ReceiptOutcome, ReceiptUpdate
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach

ATTEMPTS = 3
FAST = DispatchSettings(send_timeout=0.5, lease_seconds=0.5, concurrency=8,
                        policy=RetryPolicy(max_attempts=ATTEMPTS, base=0.01, cap=0.05))  # fmt: skip


def long_id(delivery_id: str) -> str:
    """A message id of 300 characters (an FCM-like path) whose end tells messages apart."""
    tail = hashlib.sha256(delivery_id.encode()).hexdigest()[:31]
    return f"projects/{'x' * 250}/messages/{tail}"


class Quirky(Notifier):
    """Accepts the even-numbered people's messages with a 300-character id, and refuses the
    odd-numbered ones with a 90 KB error holding NULs and a lone surrogate (a provider's raw
    bytes)."""

    name = "quirky-sms"
    channel = "sms"
    contact = "phone"
    max_batch = 1
    default_rate = 1_000_000.0
    sends: ClassVar[Counter[str]] = Counter()

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {"to": message.address}

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        out = []
        for m in batch:
            Quirky.sends[m.delivery_id] += 1
            assert m.recipient is not None
            if int(m.recipient.id[1:]) % 2:
                out.append(
                    Receipt(
                        m.delivery_id, Outcome.PERMANENT, error="no\x00such\udc80" + "<p>" * 30_000
                    )
                )
            else:
                out.append(Receipt(m.delivery_id, Outcome.SENT, provider_id=long_id(m.delivery_id)))
        return out


@pytest.fixture
def quirky(tmp_path: Path) -> Iterator[tuple[PluginHost, Path]]:
    """A host with the quirky notifier, and the engine test playbook sending through it."""

    @hookimpl
    def register_notifiers(register: Callable[..., None]) -> None:
        register(Quirky)

    plugin = ModuleType("quirky")
    plugin.register_notifiers = register_notifiers  # type: ignore[attr-defined]
    playbook = tmp_path / "quirky.yaml"
    playbook.write_text(PLAYBOOK.read_text().replace("standin-sms", "quirky-sms"))
    Quirky.sends.clear()
    yield PluginHost(extra=[("quirky", plugin)]), playbook
    Quirky.sends.clear()


def test_odd_provider_values_are_kept_and_nobody_is_sent_twice(
    tmp_path: Path, ledger_url: str, quirky: tuple[PluginHost, Path]
) -> None:
    host, playbook = quirky
    audience = phone_audience(tmp_path / "people.csv", 200)
    incident = trigger_live(tmp_path, audience, host, ledger_url, playbook=playbook)
    Breach(ledger_url, host=host).run(FAST, until_idle=True)

    rows = {r.key: r for r in deliveries(ledger_url, incident)}
    assert Counter(r.state for r in rows.values()) == Counter({"sent": 100, "failed": 100})
    assert set(Quirky.sends.values()) == {1}  # every message went out once
    assert sum(r.reclaims for r in rows.values()) == 0
    sent = [r for r in rows.values() if r.state == "sent"]
    kept = {r.provider_message_id for r in sent}
    assert len(kept) == 100 and all(len(k or "") <= MAX_PROVIDER_ID for k in kept)
    failed = next(r for r in rows.values() if r.state == "failed")
    assert failed.reason is not None and len(failed.reason) == MAX_ERROR_CHARS
    assert failed.reason.startswith("no\ufffdsuch?<p>") and failed.reason.endswith("…")

    # A receipt names the message by the id the provider gave, all 300 characters of it.
    ledger = Ledger(ledger_url)
    key = sent[0].key
    got = ledger.apply_receipts([ReceiptUpdate(ReceiptOutcome.DELIVERED, provider_id=long_id(key))])
    assert got == 1 and rows[key].provider_message_id != long_id(key)
    assert {r.key: r.state for r in deliveries(ledger_url, incident)}[key] == "delivered"
    ledger.close()


def test_a_settlement_that_keeps_failing_costs_its_batch_alone_and_a_few_sends(
    tmp_path: Path, ledger_url: str, quirky: tuple[PluginHost, Path], monkeypatch: Any
) -> None:
    """A ledger that refuses one delivery's settlement (whatever the cause) fails that batch
    only: the batches written with it are written on their own. The refused one goes out once
    a lease until it was lost ``max_attempts`` times, then is dead, each send counted among the
    possible duplicates."""
    host, playbook = quirky
    audience = phone_audience(tmp_path / "people.csv", 100)
    incident = trigger_live(tmp_path, audience, host, ledger_url, playbook=playbook)
    poisoned = f"{incident}:sms-all:p000042"
    settle = Ledger.settle
    batches: Counter[int] = Counter()

    def refusing(self: Ledger, outcomes: Sequence[Mapping[str, Any]]) -> int:
        batches[len(outcomes)] += 1
        if any(o["key"] == poisoned and o["state"] != "dead" for o in outcomes):
            raise LedgerError("the ledger refused a value: a stand-in for any bad value")
        return settle(self, outcomes)

    monkeypatch.setattr(Ledger, "settle", refusing)
    Breach(ledger_url, host=host).run(FAST, until_idle=True)

    rows = {r.key: r for r in deliveries(ledger_url, incident)}
    assert max(batches) > 1  # settlements were written together, so one failed with others
    assert Quirky.sends[poisoned] == ATTEMPTS
    assert rows[poisoned].state == "dead"
    assert rows[poisoned].reason == (
        f"not sent again: {ATTEMPTS} sends were never recorded (each lease ran out, or no "
        "answer came); the provider may have had them"
    )
    assert rows[poisoned].reclaims == ATTEMPTS
    others = [r for key, r in rows.items() if key != poisoned]
    assert {r.state for r in others} == {"sent", "failed"}
    assert {Quirky.sends[r.key] for r in others} == {1}
    assert Breach(ledger_url).status(incident)["possible_duplicates"] == ATTEMPTS
