"""The rate limit is a ceiling: R per second over 10 s, never more than R in any second."""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import pytest
from engine_support import phone_audience, standin_host, trigger_live

from orchestrator.dispatch import DispatchSettings
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

RATE = 50


@pytest.mark.slow
def test_send_rate_stays_within_the_limit(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_MAX_BATCH", "10")  # batches that divide the rate
    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = standin_host(simulator.url)
    host.notifier_classes["standin-sms"][1].max_batch = 10
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 12 * RATE), host, db)
    settings = DispatchSettings(rates={"standin-sms": RATE}, concurrency=4,
                                policy=RetryPolicy(base=0.05))  # fmt: skip
    Breach(db, host=host).run(settings, until_idle=True)
    assert Breach(db).status(incident)["steps"][0]["deliveries"] == {"sent": 12 * RATE}

    times = sorted(m.accepted_monotonic for m in simulator.accepted("standin"))
    start = times[0]
    in_ten_seconds = bisect.bisect_left(times, start + 10.0)
    measured = in_ten_seconds / 10.0
    assert RATE * 0.95 <= measured <= RATE * 1.05, measured
    # sliding windows at the provider: never more than RATE arrivals in any one second
    worst = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert worst <= RATE, worst
    if os.environ.get("BREACH_VERBOSE"):
        print(f"measured {measured:.2f}/s, busiest second {worst}")
