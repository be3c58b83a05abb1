"""``GET /metrics`` parses as Prometheus text and moves while a campaign runs."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from engine_support import PLAYBOOK, phone_audience, standin_host
from fixtures.server.harness import LiveServer, load
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.dispatch import DispatchSettings
from orchestrator.engine import Engine
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

REGULATED = """regulators:
  - id: dpc
    name: Data Protection Commission
    regime: gdpr-art33
    jurisdiction: eu
    email: breaches@dataprotection.example
steps:
  - id: report
    channel: regulator
    regulator: dpc
    at: {before_deadline: dpc, margin: 12h}
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_during_a_campaign(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREACH_FILING_DIR", str(tmp_path / "filings"))
    host = standin_host(simulator.url)
    playbook = tmp_path / "regulated.yaml"
    playbook.write_text(PLAYBOOK.read_text("utf-8").replace("steps:\n", REGULATED, 1), "utf-8")
    (tmp_path / "breach.toml").write_text("")
    db = f"sqlite:///{tmp_path / 'l.db'}"
    # a paced notifier, so the campaign lasts long enough to be watched
    settings = DispatchSettings(rates={"standin-sms": 100.0})
    config = load(tmp_path / "breach.toml", host)
    engine = lambda b: Engine(b, settings=settings, rescan_seconds=0.2)  # noqa: E731
    with LiveServer(config, db=db, host=host, engine=engine) as server:
        before = scrape(server.url)
        with Breach(db, host=host) as breach:
            people = str(phone_audience(tmp_path / "p.csv", 400))
            incident = breach.trigger(playbook, audience=people, mode="live").incident_id
        sent: list[float] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            samples = scrape(server.url)
            sent.append(value(samples, "breach_deliveries_total", notifier="standin-sms",
                              state="sent"))  # fmt: skip
            if sent[-1] >= 400:
                break
            time.sleep(0.1)
    assert value(before, "breach_deliveries_total", notifier="standin-sms", state="sent") == 0
    assert sent[-1] == 400, sent[-5:]
    assert sent == sorted(sent) and len(set(sent)) >= 3  # it rose step by step, never back
    assert value(samples, "breach_queue_depth", notifier="standin-sms") == 0
    assert value(samples, "breach_circuit_state", notifier="standin-sms") == 0
    assert value(samples, "breach_provider_latency_seconds_count", notifier="standin-sms") >= 1
    left = value(samples, "breach_deadline_seconds_left", incident=incident, regulator="dpc")
    assert 71 * 3600 < left <= 72 * 3600
