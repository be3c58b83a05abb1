"""Crash safety: SIGKILL `breach run` at random moments; the campaign finishes, no one lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_support import NOTIFIERS, deliveries, phone_audience, standin_host, states, trigger_live

from orchestrator.ledger import Ledger
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

PEOPLE = 20_000


@pytest.mark.slow
def test_sigkill_at_random_points(simulator: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "people.csv", PEOPLE), host, db)
    seed = int(os.environ.get("BREACH_CRASH_SEED", "20261125"))
    rng = random.Random(seed)
    env = {**os.environ, "STANDIN_URL": simulator.url, "STANDIN_RATE": "3000"}
    command = [sys.executable, "-m", "orchestrator", "--plugins-dir", str(NOTIFIERS), "run",
               "--until-idle", "--db", db, "--lease", "1", "--send-timeout", "2",
               "--retry-base", "0.05"]  # fmt: skip
    kills: list[float] = []
    log = (tmp_path / "runs.log").open("w")
    for _ in range(4):
        delay = rng.uniform(1.0, 5.0)
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            process.wait(timeout=delay)
            break  # it finished before this kill point
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append(round(delay, 2))
        sent_so_far = states(db, incident)["sent"]
        log.write(f"killed after {delay:.2f}s with {sent_so_far} sent\n")
        log.flush()
    started = time.monotonic()
    final = subprocess.run(command, env=env, stdout=log, stderr=log, timeout=300, check=False)
    log.close()
    assert final.returncode == 0, (tmp_path / "runs.log").read_text()[-3000:]
    assert len(kills) >= 2, f"the campaign outran the kills {kills} (seed {seed})"

    # Every person: exactly one delivery row, sent; the step and the incident are finished.
    assert states(db, incident) == Counter({"sent": PEOPLE})
    status = Breach(db).status(incident)
    assert status["state"] == "finished", status
    # The provider got every message at least once, and at most once plus the counted
    # duplicates: deliveries whose lease expired mid-send because their process was killed.
    accepted = Counter(m.delivery_id for m in simulator.accepted("standin"))
    assert set(accepted) == {d.key for d in deliveries(db, incident)}
    duplicates = sum(n - 1 for n in accepted.values())
    reclaimed = Ledger(db).reclaimed(incident)
    assert duplicates <= reclaimed, (duplicates, reclaimed, kills)
    assert status["possible_duplicates"] == reclaimed
    print(
        f"kills at {kills}s; duplicates {duplicates} <= reclaimed {reclaimed}; "
        f"final run {time.monotonic() - started:.1f}s"
    )
