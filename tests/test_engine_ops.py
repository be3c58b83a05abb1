"""Operating the engine: the circuit breaker, sandbox mode, masked JSON logs, status output."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from engine_support import (
    NOTIFIERS,
    PLAYBOOK,
    deliveries,
    phone_audience,
    standin_host,
    states,
    trigger_live,
)

from orchestrator.dispatch import CLAIM_ROWS, DispatchSettings
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator


def test_circuit_opens_while_the_provider_is_down(simulator: Simulator, tmp_path: Path) -> None:
    simulator.configure("standin", error_rate=1.0, error_statuses=(503,))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 200), host, db)
    seen: list[dict[str, Any]] = []
    settings = DispatchSettings(send_timeout=1.0, concurrency=1, circuit_threshold=2,
                                circuit_cooldown=0.1, circuit_max_cooldown=0.2,
                                policy=RetryPolicy(max_attempts=3, base=0.01))  # fmt: skip
    engine = Breach(db, host=host).engine(
        settings, on_tick=lambda e: seen.append(e.dispatcher.circuit_states())
    )
    engine.rescan_seconds = 0.1
    import asyncio

    asyncio.run(engine.run(until_idle=True))
    assert any(s.get("standin-sms", {}).get("state") == "open" for s in seen)
    assert set(states(db, incident)) == {"dead"}
    # Without the breaker, 10 batches x 3 attempts would hit the provider 30 times in a burst;
    # with it, each probe waits out the cooldown — the requests are the same, spread out.
    times = [r.received_monotonic for r in simulator.requests("standin")]
    assert max(times) - min(times) >= 0.2


def test_sandbox_mode_reaches_the_notifier(tmp_path: Path) -> None:
    from orchestrator.pluginhost import PluginHost

    host = PluginHost(plugins_dir=NOTIFIERS)
    leaky = host.notifier_classes["leaky-sms"][1]
    leaky.modes.clear()  # type: ignore[attr-defined]
    playbook = tmp_path / "leaky.yaml"
    playbook.write_text(PLAYBOOK.read_text().replace("standin-sms", "leaky-sms"))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    Breach(db, host=host).trigger(
        playbook, audience=str(phone_audience(tmp_path / "p.csv", 3)), mode="sandbox"
    )
    Breach(db, host=host).run(DispatchSettings(policy=RetryPolicy(max_attempts=1)), until_idle=True)
    assert leaky.modes == ["sandbox"]  # type: ignore[attr-defined]


def test_json_logs_mask_personal_data(tmp_path: Path) -> None:
    playbook = tmp_path / "leaky.yaml"
    playbook.write_text(PLAYBOOK.read_text().replace("standin-sms", "leaky-sms"))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    from orchestrator.pluginhost import PluginHost

    host = PluginHost(plugins_dir=NOTIFIERS)
    Breach(db, host=host).trigger(
        playbook, audience=str(phone_audience(tmp_path / "p.csv", 2)), mode="live"
    )
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--plugins-dir", str(NOTIFIERS), "run",
         "--until-idle", "--db", db, "--log-json", "--max-attempts", "1"],
        capture_output=True, text=True, check=False, env=os.environ.copy(), timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line.get("event") == "notifier failed"]
    assert failures, run.stderr
    text = json.dumps(failures)
    assert "+14155550100" not in text and "privacy@example.org" not in text
    assert "+1********00" in text or "+1" in text
    assert "p***@example.org" in text


def test_status_command_shows_deadlines_and_counts(simulator: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 50), host, db)
    Breach(db, host=host).run(until_idle=True)
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--plugins-dir", str(NOTIFIERS), "status",
         incident, "--db", db], capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "sent: 50" in shown.stdout and "done" in shown.stdout
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", incident, "--db", db, "--json"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert as_json["steps"][0]["deliveries"] == {"sent": 50}
    assert as_json["possible_duplicates"] == 0


def test_a_stopped_worker_gives_back_the_chunk_it_claimed_ahead(
    simulator: Simulator, tmp_path: Path
) -> None:
    """Dispatch claims the next chunk while one goes out; a clean stop gives it back: pending
    again, its attempt undone, nothing counted as a possible duplicate."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "people.csv", 3000), host, db)
    breach = Breach(db, host=host)
    settings = DispatchSettings(rates={"standin-sms": 1_000_000}, concurrency=2)

    async def run_then_stop() -> None:
        engine = breach.engine(settings)
        running = asyncio.create_task(engine.run())
        while not engine.dispatcher.counts["sent"]:
            await asyncio.sleep(0.01)
        engine.request_stop()
        await running

    asyncio.run(run_then_stop())
    counts = states(db, incident)
    assert counts["sent"] and counts["pending"] and counts["sending"] == 0, counts
    rows = deliveries(db, incident)
    assert {d.attempts for d in rows if d.state == "pending"} == {0}
    assert breach.status(incident)["possible_duplicates"] == 0


def _one_step_live(
    simulator: Simulator, tmp_path: Path, step: str, column: str, addresses: list[str]
) -> tuple[Breach, str]:
    """A live incident of a one-step playbook (``step``: its YAML flow mapping) over one person
    per address, its notifiers pointed at the simulator: the session and the incident id."""
    from factories import notice_yaml

    from orchestrator.simulator.cli import plugin_settings

    playbook = tmp_path / "one-step.yaml"
    playbook.write_text(
        "id: one-step\ntitle: One step\nversion: 1\nseverity: high\n"
        "organisation: {name: Example Org, contact_email: privacy@example.org}\n"
        + notice_yaml("en")
        + f"steps:\n  - {step}\n"
    )
    people = tmp_path / "people.csv"
    people.write_text(f"id,{column}\n" + "".join(f"p{i},{a}\n" for i, a in enumerate(addresses)))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    breach = Breach(db, settings=plugin_settings(simulator.url, simulator.config))
    return breach, breach.trigger(playbook, audience=str(people), mode="live").incident_id


def test_a_slow_ledger_write_frees_the_providers_slots_but_bounds_what_is_unrecorded(
    simulator: Simulator, tmp_path: Path, monkeypatch: Any
) -> None:
    """A batch whose provider answered frees its request slot before its settlement is
    written, so sending goes on while the ledger writes; but only up to SETTLE_BACKLOG batches
    per slot: a stalled ledger stops the sending with few messages out that it has not
    recorded. Once the ledger answers, every person has exactly one message."""
    from orchestrator.dispatch import SETTLE_BACKLOG

    breach, incident = _one_step_live(
        simulator, tmp_path, "{id: sms-all, channel: sms, at: +0m, dedupe: none}",
        "phone", [f"+1415555{i:04d}" for i in range(40)],
    )  # fmt: skip
    concurrency = 2
    engine = breach.engine(DispatchSettings(rates={"twilio-sms": 1_000_000},
                                            concurrency=concurrency))  # fmt: skip
    stalled, resume = threading.Event(), threading.Event()
    settle = breach.ledger.settle

    def slow_settle(outcomes: Any) -> int:
        stalled.set()
        resume.wait(30)
        return settle(outcomes)

    monkeypatch.setattr(breach.ledger, "settle", slow_settle)
    sent_while_stalled: list[int] = []

    def watch() -> None:
        stalled.wait(30)
        # the backlog fills (slots freed while the write hangs), then stays full
        deadline = time.monotonic() + 10
        while (len(simulator.requests("twilio")) < SETTLE_BACKLOG * concurrency
               and time.monotonic() < deadline):  # fmt: skip
            time.sleep(0.02)
        time.sleep(0.5)  # long enough for many more requests, were they not bounded
        sent_while_stalled.append(len(simulator.requests("twilio")))
        resume.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asyncio.run(engine.run(until_idle=True))
    finally:
        resume.set()
        watcher.join()
    # more than the slots (they were freed), no more than the backlog allows
    assert concurrency < sent_while_stalled[0] <= SETTLE_BACKLOG * concurrency, sent_while_stalled
    assert breach.status(incident)["steps"][0]["deliveries"] == {"sent": 40}
    sent = [m.recipient for m in simulator.accepted("twilio")]
    assert len(sent) == len(set(sent)) == 40


@pytest.mark.parametrize(
    ("rate", "most", "people"), [(1_000_000, CLAIM_ROWS, 1500), (200, 200, 400)]
)
def test_a_claim_takes_what_the_rate_sends_in_a_second_and_no_more(
    simulator: Simulator, tmp_path: Path, monkeypatch: Any, rate: int, most: int, people: int
) -> None:
    """SMS go one to a request: a claim takes more than one per slot, as many as the rate sends
    within a second (up to CLAIM_ROWS), so the rows it holds are never left waiting out their
    lease; and every person is reached once."""
    breach, incident = _one_step_live(
        simulator, tmp_path, "{id: sms-all, channel: sms, at: +0m, dedupe: none}",
        "phone", [f"+1415555{i:04d}" for i in range(people)],
    )  # fmt: skip
    asked: list[int] = []
    claim = breach.ledger.claim

    def counted(notifier: str, limit: int, lease: float) -> Any:
        asked.append(limit)
        return claim(notifier, limit, lease)

    monkeypatch.setattr(breach.ledger, "claim", counted)
    engine = breach.engine(DispatchSettings(rates={"twilio-sms": rate}, concurrency=4))
    asyncio.run(engine.run(until_idle=True))
    assert max(asked) == most
    assert breach.status(incident)["steps"][0]["deliveries"] == {"sent": people}
    sent = [m.recipient for m in simulator.accepted("twilio")]
    assert len(sent) == len(set(sent)) == people


def test_a_provider_holding_the_default_threads_never_stops_the_heartbeat(
    simulator: Simulator, tmp_path: Path
) -> None:
    """SendGrid's posts run in the event loop's default executor. With the provider slow to
    answer they fill it; the ledger's work (heartbeat, claims, settlements) has threads of its
    own, so the worker never looks dead to the others meanwhile."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from sqlalchemy import select

    from orchestrator.ledger import Ledger
    from orchestrator.ledger.models import Worker

    simulator.configure("sendgrid", latency=4.0)
    breach, incident = _one_step_live(
        simulator, tmp_path, "{id: mail-all, channel: email, at: +0m}",
        "email", [f"p{i}@example.org" for i in range(5000)],
    )  # fmt: skip
    db = breach.ledger.url
    # five requests of 1,000 recipients, four default threads: every one of them is held
    settings = DispatchSettings(rates={"sendgrid-email": 1_000_000}, concurrency=8,
                                worker_timeout=2.0)  # fmt: skip
    engine = breach.engine(settings)
    gaps: list[float] = []
    running = True

    def watch() -> None:
        reader = Ledger(db)
        while running:
            with reader.session() as s:
                beats = list(s.scalars(select(Worker.heartbeat_at)))
            if beats:
                gaps.append((datetime.now(UTC) - max(beats).replace(tzinfo=UTC)).total_seconds())
            time.sleep(0.05)

    async def run() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        await engine.run(until_idle=True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asyncio.run(run())
    finally:
        running = False
        watcher.join()
    assert breach.status(incident)["steps"][0]["deliveries"] == {"sent": 5000}
    assert len(simulator.requests("sendgrid")) >= 5
    # a heartbeat every 0.4 s: a gap near the 2 s timeout would let another worker take over
    assert gaps and max(gaps) < 1.5, max(gaps)


def test_fan_outs_never_take_the_threads_of_short_ledger_work(tmp_path: Path) -> None:
    """More fan-outs at once than the ledger has threads for its statements: a heartbeat
    still runs at once."""
    from orchestrator.ledger import LEDGER_THREADS, Ledger

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    release = threading.Event()

    async def run() -> int:
        fanouts = [asyncio.ensure_future(ledger.in_long_thread(release.wait, 30))
                   for _ in range(LEDGER_THREADS + 2)]  # fmt: skip
        try:
            return await asyncio.wait_for(ledger.in_thread(lambda: 1), timeout=10)
        finally:
            release.set()
            await asyncio.gather(*fanouts)

    try:
        assert asyncio.run(run()) == 1
    finally:
        ledger.close()
