"""The demo: the whole job on one machine, nothing leaving it.

:class:`DemoRun` runs a playbook live end to end: it starts the provider simulator in this
process with a share of provider requests failing, generates a synthetic audience, points every
plugin at the simulator through the plugins' own settings (handed to the session's plugin host,
never written into the environment), triggers the playbook with its awareness time far enough in
the past that every step is due, approves the gated steps as ``demo``, runs the delivery engine
until nothing is left to do, and compares what the simulator accepted with what the ledger
recorded.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import shipped
from .dispatch import DispatchSettings
from .engine import Engine
from .errors import BreachError
from .ledger import now
from .playbook import Playbook
from .pluginhost import PluginHost
from .regimes import Regime, load_regimes
from .retry import RetryPolicy
from .schedule import deadlines, ordered_steps
from .session import Breach
from .simulator import Simulator, SimulatorConfig
from .simulator.cli import FAULTED_PROVIDERS, failure_mix, plugin_settings
from .validation import load_playbook

#: This playbook uses all three provider plugins (SMS, e-mail, push) plus the public
#: announcement and the regulator filing.
DEFAULT_PLAYBOOK = "credential-leak"
APPROVER = "demo"
PROVIDER_OF_CHANNEL = {"sms": "twilio", "call": "twilio", "email": "sendgrid", "push": "fcm"}
SENT_STATES = ("sent", "delivered")
#: The simulator has no rate limit, so the demo lifts the notifiers' production rates.
DEMO_RATES = {
    "twilio-sms": 2000.0,
    "twilio-call": 2000.0,
    "sendgrid-email": 20000.0,
    # firebase-admin sends every message of a batch at once over one httpx connection pool.
    # Once batches overlap there, httpcore 1.0's pool re-scans its whole queue on every event
    # (encode/httpcore#1035), each batch takes longer, more overlap, and the event loop starves.
    # Batches of 200 a second, two at most in flight, stay clear of that.
    "fcm-push": 200.0,
}
#: Batches in flight per notifier (the FCM note above); SMS still outpaces the pushes.
DEMO_CONCURRENCY = 2
#: Retries come quickly: the simulator's faults are momentary, and a demo should not idle.
DEMO_POLICY = RetryPolicy(max_attempts=10, base=0.1, cap=2.0)


@dataclass
class ChannelCount:
    """One channel: what the simulator accepted and what the ledger recorded."""

    channel: str
    provider: str
    accepted: int
    ledger: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.ledger[s] for s in SENT_STATES)

    def agrees(self, possible_duplicates: int) -> bool:
        """Every accepted message is a sent delivery; extra ones only as counted duplicates."""
        return self.sent <= self.accepted <= self.sent + possible_duplicates

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "provider": self.provider, "accepted": self.accepted,
                "ledger_sent": self.sent, "ledger": dict(self.ledger)}  # fmt: skip


@dataclass
class DemoResult:
    """What one demo run did, for the closing report (and ``--json``)."""

    incident_id: str
    status: dict[str, Any]
    channels: list[ChannelCount]
    provider_stats: dict[str, Any]
    engine_counts: dict[str, int]
    seconds: float
    outdir: Path
    db: str
    page: str
    approved: list[str]
    finished: bool

    @property
    def agrees(self) -> bool:
        duplicates = int(self.status.get("possible_duplicates") or 0)
        return all(c.agrees(duplicates) for c in self.channels)

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident_id, "finished": self.finished,
            "seconds": round(self.seconds, 2), "agrees": self.agrees,
            "channels": [c.as_dict() for c in self.channels], "providers": self.provider_stats,
            "engine": self.engine_counts, "approved": self.approved, "outdir": str(self.outdir),
            "db": self.db, "simulator_page": self.page, "status": self.status,
        }  # fmt: skip


class DemoRun:
    """One demo: the simulator, the audience, the incident and the engine run.

    ``say`` receives the running commentary (what was generated, triggered, approved);
    ``on_tick`` is handed to the engine (a progress view).
    """

    def __init__(
        self,
        *,
        playbook: str | Path = DEFAULT_PLAYBOOK,
        people: int,
        failure_rate: float,
        outdir: Path,
        db: str | None = None,
        seed: int = 0,
        plugins_dir: Path | None = None,
        regimes_file: Path | None = None,
        say: Callable[[str], None] = lambda _line: None,
        on_tick: Callable[[Engine], None] | None = None,
    ) -> None:
        self.playbook_path = shipped.locate(playbook)
        self.people = people
        self.outdir = outdir
        self.db = db or f"sqlite:///{(outdir / 'demo.db').resolve()}"
        self.seed = seed
        self.plugins_dir = plugins_dir
        self.regimes_file = regimes_file
        self.say = say
        self.on_tick = on_tick
        faults = {name: failure_mix(failure_rate) for name in FAULTED_PROVIDERS}
        self.failure_rate = failure_rate
        self.simulator = Simulator(SimulatorConfig(seed=seed, providers=faults))

    def __enter__(self) -> DemoRun:
        self.simulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.simulator.stop()

    def settings(self, playbook: Playbook, probe: PluginHost) -> dict[str, str]:
        """Settings that point the plugins at the simulator. Every other notifier setting of
        the environment (those ``probe``'s notifiers declare) is left out, so nothing the shell
        exports, a real API key or a real endpoint, takes part in a demo."""
        names = {spec.name for _, cls in probe.notifier_classes.values()
                 for spec in cls.settings_spec}  # fmt: skip
        blocked = names | {name + "_FILE" for name in names}
        settings = {k: v for k, v in os.environ.items() if k not in blocked}
        org = playbook.organisation
        sender = f"{org.name} <{org.contact_email}>"
        settings.update(plugin_settings(self.simulator.url, self.simulator.config,
                                        email_from=sender))  # fmt: skip
        settings["BREACH_PUBLISH_DIR"] = str((self.outdir / "public").resolve())
        settings["BREACH_FILING_DIR"] = str((self.outdir / "filings").resolve())
        return settings

    def run(self) -> DemoResult:
        """Generate the audience, trigger, approve, deliver until idle, and compare counts."""
        from .synthetic import generate_audience

        started = time.monotonic()
        self.outdir.mkdir(parents=True, exist_ok=True)
        # The playbook is parsed once, with the plugins as installed (no settings read), and
        # that parse is what the session triggers.
        probe = PluginHost(plugins_dir=self.plugins_dir, settings={})
        regimes = load_regimes(self.regimes_file)
        playbook = load_playbook(self.playbook_path, host=probe, regimes=regimes)
        breach = Breach(self.db, plugins_dir=self.plugins_dir, regimes_file=self.regimes_file,
                        settings=self.settings(playbook, probe))  # fmt: skip
        with breach:
            audience = self.outdir / "audience.csv"
            stats = generate_audience(audience, self.people, seed=self.seed)
            say = self.say
            say(f"breach demo: {playbook.title} ({playbook.id} "
                f"v{playbook.version}), live against the provider simulator at "
                f"{self.simulator.url}")  # fmt: skip
            say(f"  people    {stats.rows:,} synthetic ({audience}): {stats.with_phone:,} "
                f"with a phone, {stats.with_email:,} with an e-mail address, "
                f"{stats.with_push:,} with a push token, {stats.invalid:,} with a deliberately "
                "invalid contact")  # fmt: skip
            say(f"  faults    {self.failure_rate:.0%} of provider requests fail (5xx, 429, "
                "dropped connection); the engine retries them")  # fmt: skip
            current = now()
            aware_at = overdue_aware_at(playbook, breach.regimes, current)
            result = breach.trigger(playbook, audience=str(audience), aware_at=aware_at,
                                    facts=demo_facts(playbook, self.people), mode="live",
                                    source="demo")  # fmt: skip
            incident_id = result.incident_id
            hours = (current - aware_at).total_seconds() / 3600
            say(f"  incident  {incident_id}, aware {hours:.0f}h ago so that every step is due now")
            approved = []
            for step in playbook.trigger_steps:  # on_update steps wait for an update
                if step.approval is not None:
                    breach.approve(incident_id, step.id, by=APPROVER)
                    approved.append(step.id)
                    say(f"  approved  {step.id} (role {step.approval.label}) as {APPROVER!r}; in "
                        f"a real incident that role runs `breach approve {incident_id} {step.id} "
                        "--by NAME`")  # fmt: skip
            settings = DispatchSettings(rates=DEMO_RATES, concurrency=DEMO_CONCURRENCY,
                                        policy=DEMO_POLICY, circuit_cooldown=2.0)  # fmt: skip
            report = breach.run(settings, until_idle=True, on_tick=self.on_tick)
            status = breach.status(incident_id)
            channels = self.compare(breach.deliveries_by_channel(incident_id))
        finished = status["state"] == "finished" or not any(
            s["deliveries"].get(k) for s in status["steps"] for k in ("pending", "sending")
        )
        stats_by_provider = self.simulator.stats()
        return DemoResult(
            incident_id=incident_id, status=status, channels=channels,
            provider_stats={p: stats_by_provider[p] for p in FAULTED_PROVIDERS},
            engine_counts=dict(report.counts), seconds=time.monotonic() - started,
            outdir=self.outdir, db=self.db, page=f"{self.simulator.url}/", approved=approved,
            finished=finished,
        )  # fmt: skip

    def compare(self, by_channel: Mapping[str, Mapping[str, int]]) -> list[ChannelCount]:
        """Per provider channel: messages the simulator accepted, deliveries the ledger holds."""
        accepted = Counter(m.channel for m in self.simulator.accepted())
        channels = (set(accepted) | set(by_channel)) & set(PROVIDER_OF_CHANNEL)
        return [
            ChannelCount(c, PROVIDER_OF_CHANNEL[c], accepted[c], Counter(by_channel.get(c, {})))
            for c in sorted(channels, key=lambda c: (PROVIDER_OF_CHANNEL[c], c))
        ]


def demo_facts(playbook: Playbook, people: int) -> dict[str, Any]:
    """Facts for the demo: the audience size as ``affected_count``, each other required fact
    without a default from its ``example``."""
    facts: dict[str, Any] = {}
    for name, spec in playbook.facts.items():
        if name == "affected_count":
            facts[name] = people
        elif spec.required and spec.default is None:
            if spec.example is None:
                raise BreachError(
                    f"playbook {playbook.id} requires fact {name!r} and gives no example for it; "
                    "the demo fills required facts from their `example`"
                )
            facts[name] = spec.example
    return facts


def overdue_aware_at(
    playbook: Playbook, regimes: Mapping[str, Regime], current: datetime
) -> datetime:
    """An awareness time early enough that every step with a relative time is due at ``current``.

    Steps at an absolute time stay where they are. Deadlines need not be linear in the
    awareness time (business days), so the shift is checked and widened until it holds.
    """
    aware = current - timedelta(minutes=1)
    for _ in range(10):
        due = deadlines(playbook, aware, dict(regimes))
        latest = max(
            (at for step, at in ordered_steps(playbook, aware, due)
             if not isinstance(step.at, datetime)),
            default=aware,
        )  # fmt: skip
        if latest <= current:
            return aware
        aware -= latest - current + timedelta(minutes=1)
    return aware
