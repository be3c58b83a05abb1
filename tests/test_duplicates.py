"""Every duplicate is counted: providers slower than ``--send-timeout``, real SDKs.

Twilio (SMS) and FCM (push) run through their real plugins against the simulator, which answers
many requests after the 0.5 s the engine waits: those sends time out although the provider
accepted them, and are tried again. The extra copies the simulator holds must never
exceed the possible duplicates the ledger reports.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from factories import notice_yaml

from orchestrator.dispatch import DispatchSettings
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import plugin_settings

PLAYBOOK = (
    """\
id: slow-providers
title: Slow providers
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
"""
    + notice_yaml("en")
    + """\
steps:
  - {id: sms-all, channel: sms, at: +0m}
  - {id: push-all, channel: push, at: +0m}
"""
)
PEOPLE = 60


def test_sends_that_time_out_are_counted_as_possible_duplicates(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.configure("twilio", latency=0.2, jitter=0.8, seed=7)
    # a push batch waits for its slowest message: batches of ten, each slow one time in ten
    simulator.configure("fcm", latency=0.0, jitter=0.55, seed=7)
    playbook = tmp_path / "slow.yaml"
    playbook.write_text(PLAYBOOK)
    people = tmp_path / "people.csv"
    people.write_text("id,phone,push_token\n" + "".join(
        f"p{i},+1415555{100 + i:04d},token-{i:04d}\n" for i in range(PEOPLE)))  # fmt: skip
    settings = DispatchSettings(
        send_timeout=0.5,
        concurrency=8,
        circuit_threshold=10_000,
        rates={"fcm-push": 10.0},
        policy=RetryPolicy(max_attempts=40, base=0.01, cap=0.1),
    )
    with Breach(f"sqlite:///{tmp_path / 'l.db'}",
                settings=plugin_settings(simulator.url, simulator.config)) as breach:  # fmt: skip
        incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
        report = breach.run(settings, until_idle=True)
        status = breach.status(incident)
    simulator.drain()  # answers still on their way when the engine gave up waiting

    assert {s["step"]: s["deliveries"] for s in status["steps"]} == {
        "sms-all": {"sent": PEOPLE}, "push-all": {"sent": PEOPLE}}  # fmt: skip
    accepted = Counter(m.channel for m in simulator.accepted())
    extra = sum(accepted.values()) - 2 * PEOPLE
    assert report.counts["retried"] > 0 and extra > 0  # the slow answers did cause duplicates
    assert extra <= status["possible_duplicates"], (accepted, status["possible_duplicates"])


LOSSY = (
    """\
id: lossy-providers
title: Providers whose answers get lost
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
"""
    + notice_yaml("en")
    + """\
steps:
  - {id: sms-all, channel: sms, at: +0m}
  - {id: email-all, channel: email, at: +0m}
  - {id: push-all, channel: push, at: +0m}
"""
)
CHANNEL_STEPS = {"sms": "sms-all", "email": "email-all", "push": "push-all"}


def test_answers_lost_by_the_sdks_are_counted_as_possible_duplicates(
    simulator: Simulator, tmp_path: Path, ledger_url: str
) -> None:
    """One request in ten is accepted but its answer lost, one in ten dropped unprocessed: the
    plugins see a dead connection either way, after the request went out, and say so. The
    engine waits long enough never to time a send out itself: only the plugins can tell."""
    for provider in ("twilio", "sendgrid", "fcm"):
        simulator.configure(provider, lost_reply_rate=0.1, drop_rate=0.1, seed=12)
    playbook = tmp_path / "lossy.yaml"
    playbook.write_text(LOSSY)
    people = tmp_path / "people.csv"
    people.write_text("id,phone,email,push_token\n" + "".join(
        f"p{i},+1415555{100 + i:04d},p{i}@example.org,token-{i:04d}\n"
        for i in range(PEOPLE)))  # fmt: skip
    settings = DispatchSettings(
        send_timeout=60,
        concurrency=4,
        circuit_threshold=10_000,
        # small e-mail and push batches: many requests, so answers get lost on every channel
        rates={"sendgrid-email": 20.0, "fcm-push": 20.0},
        policy=RetryPolicy(max_attempts=40, base=0.01, cap=0.1),
    )
    with Breach(ledger_url,
                settings=plugin_settings(simulator.url, simulator.config)) as breach:  # fmt: skip
        incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
        breach.run(settings, until_idle=True)
        status = breach.status(incident)
        rows = [
            (d.step_id, d.reclaims) for batch in breach.ledger.delivery_batches(incident)
            for d in batch
        ]  # fmt: skip
    simulator.drain()

    assert {s["step"]: s["deliveries"] for s in status["steps"]} == {
        step: {"sent": PEOPLE} for step in CHANNEL_STEPS.values()}  # fmt: skip
    copies = Counter((m.channel, m.key) for m in simulator.accepted())
    extra = Counter({channel: 0 for channel in CHANNEL_STEPS})
    for (channel, _), n in copies.items():
        extra[channel] += n - 1
    counted = Counter({step: 0 for step in CHANNEL_STEPS.values()})
    for step, reclaims in rows:
        counted[step] += reclaims
    for channel, step in CHANNEL_STEPS.items():
        assert extra[channel] > 0, (channel, simulator.requests())  # answers were lost here
        assert extra[channel] <= counted[step], (channel, extra, counted)
    assert status["possible_duplicates"] == sum(counted.values())
    assert sum(extra.values()) <= status["possible_duplicates"]
