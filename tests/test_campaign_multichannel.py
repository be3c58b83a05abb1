"""A 10,000-person campaign over SMS, e-mail and push through the real provider SDKs.

The engine runs in this process against the provider simulator, which fails 5 % of the requests
to Twilio, SendGrid and FCM (a 5xx, a 429 or a dropped connection). The campaign must end with
every delivery settled, every person reached on some channel or recorded with a reason, and the
simulator's accepted messages matching the ledger's sent deliveries, channel by channel.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from engine_support import deliveries

from orchestrator.dispatch import DispatchSettings
from orchestrator.ledger import Delivery
from orchestrator.pluginhost import PluginHost
from orchestrator.retry import RetryPolicy
from orchestrator.session import Breach
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import FAULTED_PROVIDERS, failure_mix, plugin_settings
from orchestrator.synthetic import generate_audience

PLAYBOOK = Path(__file__).parent / "fixtures" / "playbooks" / "multichannel.yaml"
PEOPLE = 10_000
#: Chosen so that SendGrid, which gets only about ten requests (1,000 e-mails each), meets a
#: dropped connection, a 429 and a 5xx among its first seven; Twilio and FCM get thousands.
FAULT_SEED = 1434
TERMINAL = {"sent", "delivered", "failed", "skipped", "dead"}
SENT = ("sent", "delivered")
SETTINGS = DispatchSettings(
    # The simulator has no rate limit; the production defaults (10 SMS/s) would take minutes.
    # FCM stays at 200/s with two batches in flight at most: firebase-admin sends a whole batch
    # at once over one httpx pool, and once batches overlap there httpcore's pool re-scans its
    # queue on every event (encode/httpcore#1035) until the event loop starves.
    rates={"twilio-sms": 2000.0, "sendgrid-email": 20000.0, "fcm-push": 200.0},
    concurrency=2,
    policy=RetryPolicy(max_attempts=12, base=0.05, cap=1.0),
    circuit_cooldown=1.0,
)


@pytest.fixture
def campaign(simulator: Simulator, tmp_path: Path) -> tuple[str, str, float]:
    """Trigger and run the campaign; (incident id, ledger URL, seconds the engine took)."""
    for provider in FAULTED_PROVIDERS:
        simulator.configure(provider, **failure_mix(0.05, seed=FAULT_SEED).to_dict())
    audience = tmp_path / "people.csv"
    generate_audience(audience, PEOPLE, seed=4)
    host = PluginHost(settings=plugin_settings(simulator.url, simulator.config))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    incident = (
        Breach(db, host=host)
        .trigger(PLAYBOOK, audience=str(audience), facts={"affected_count": PEOPLE}, mode="live")
        .incident_id
    )
    started = time.monotonic()
    Breach(db, host=host).run(SETTINGS, until_idle=True)
    return incident, db, time.monotonic() - started


# The Twilio SDK's async client warns twice per request about aiohttp's BasicAuth; recording
# 7,000 warnings doubles the test's time.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
@pytest.mark.slow
def test_every_person_is_reached_or_has_a_reason_and_the_counts_match(
    simulator: Simulator, campaign: tuple[str, str, float]
) -> None:
    incident, db, _seconds = campaign
    rows = deliveries(db, incident)
    status = Breach(db).status(incident)
    duplicates = int(status["possible_duplicates"])

    # Every step fanned out over the whole audience, and every delivery settled.
    per_step = Counter(r.step_id for r in rows)
    assert per_step == {"sms-credentials": PEOPLE, "email-others": PEOPLE, "push-everyone": PEOPLE}
    assert {r.state for r in rows} <= TERMINAL
    assert all(s["state"] == "done" for s in status["steps"]), status["steps"]
    assert status["state"] == "finished"
    # Faults were retried to success: nothing was refused or given up.
    states = Counter(r.state for r in rows)
    assert states["failed"] == 0 and states["dead"] == 0, _reasons(rows)

    # Every person is reached on some channel, or each of their deliveries says why not.
    people: dict[str, list[Delivery]] = {}
    for row in rows:
        people.setdefault(row.recipient_id, []).append(row)
    assert len(people) == PEOPLE
    # one message per address: people sharing a number or inbox (the synthetic audience's US
    # numbers are the hundred fictional 555-01xx ones) are reached through its one message
    shared = {r.recipient_id for r in rows if r.shares_with is not None}
    assert shared and all(
        r.reason == f"same address as {r.shares_with}" for r in rows if r.shares_with
    )
    unreached = [
        rs for rs in people.values()
        if not any(r.state in SENT or r.recipient_id in shared for r in rs)
    ]  # fmt: skip
    assert all(r.reason for rs in unreached for r in rs)
    assert 0 < len(unreached) < PEOPLE * 0.05  # the synthetic audience has a few without contact
    assert {r.reason for rs in unreached for r in rs} >= {"no push token", "no phone number"}
    # The e-mail step sent SMS to people without a usable address instead.
    fallback = [r for r in rows if r.step_id == "email-others" and r.via_fallback]
    assert fallback and all(
        r.channel == "sms" and (r.state in SENT or r.recipient_id in shared) for r in fallback
    )

    # The simulator injected every kind of fault at every provider, and the engine retried them.
    stats = simulator.stats()
    for provider in FAULTED_PROVIDERS:
        outcomes = stats[provider]["outcomes"]
        assert outcomes.get("error") and outcomes.get("throttled") and outcomes.get("dropped"), (
            provider,
            outcomes,
        )
    retried = Counter(r.channel for r in rows if r.state in SENT and r.attempts > 1)
    assert set(retried) == {"sms", "email", "push"}

    # What the providers accepted is what the ledger recorded as sent, channel by channel.
    sent = {c: [r for r in rows if r.channel == c and r.state in SENT] for c in retried}
    for channel, provider in (("email", "sendgrid"), ("push", "fcm")):
        ids = [m.delivery_id for m in simulator.accepted(provider)]
        assert set(ids) == {r.key for r in sent[channel]}, channel
        assert len(ids) - len(set(ids)) <= duplicates, channel
    # Twilio messages carry no delivery id without a status callback: compare the numbers
    # each message went to (several synthetic people share a fictional number).
    to = Counter(m.recipient for m in simulator.accepted("twilio"))
    recorded = Counter(r.contact for r in sent["sms"])
    assert not recorded - to, "sent in the ledger but never accepted by Twilio"
    assert (to - recorded).total() <= duplicates, "accepted by Twilio but not recorded as sent"
    for channel, provider in (("sms", "twilio"), ("email", "sendgrid"), ("push", "fcm")):
        accepted = stats[provider]["accepted_messages"]
        assert len(sent[channel]) <= accepted <= len(sent[channel]) + duplicates, channel


def _reasons(rows: list[Delivery]) -> Counter[str]:
    return Counter(f"{r.state}: {r.reason}" for r in rows if r.state in ("failed", "dead"))
