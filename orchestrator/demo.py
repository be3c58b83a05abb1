"""``breach demo`` and ``breach simulate``: the whole job on one machine, nothing leaving it.

``breach simulate`` serves the provider simulator (Twilio, SendGrid and FCM on one loopback
port) and prints the settings that point the provider plugins at it.

``breach demo`` runs a shipped playbook live end to end: it starts the simulator in this process
with a share of provider requests failing, generates a synthetic audience, points every plugin at
the simulator through the plugins' own settings (handed to the plugin host, never written into
the environment), triggers the playbook with its awareness time far enough in the past that every
step is due, approves the gated steps as ``demo``, runs the delivery engine until nothing is left
to do, and compares what the simulator accepted with what the ledger recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from . import api
from .dispatch import DispatchSettings
from .errors import BreachError, ConfigurationError
from .ledger import Delivery, Ledger, now
from .playbook import Playbook
from .pluginhost import PluginHost
from .regimes import Regime, load_regimes
from .retry import RetryPolicy
from .schedule import deadlines, ordered_steps
from .simulator import ProviderConfig, Simulator, SimulatorConfig, serve
from .simulator.cli import FAULTED_PROVIDERS, failure_mix, load_config_file, plugin_settings
from .validation import load_playbook

#: The README runs the demo from the repository root; this playbook uses all three provider
#: plugins (SMS, e-mail, push) plus the public announcement and the regulator filing.
DEFAULT_PLAYBOOK = Path("playbooks") / "credential-leak.yaml"
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


# -- breach simulate ---------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON or TOML file: credentials, and faults per provider under `providers`.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed of the fault draws (wins over --config)."
)
def simulate(host: str, port: int, config_file: Path | None, seed: int | None) -> None:
    """Serve the provider simulator (Twilio, SendGrid, FCM) until Ctrl-C."""
    config = load_config_file(config_file) if config_file is not None else SimulatorConfig()
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    if not _is_loopback(host):
        click.echo(
            f"warning: serving on {host}: the simulator's credentials are printed below and it "
            "speaks plain HTTP; keep it on a private test network",
            err=True,
        )

    def ready(url: str) -> None:
        click.echo(simulator_banner(url, config))
        sys.stdout.flush()  # a supervising script reads the address before the first request

    try:
        asyncio.run(_serve_until_signalled(host, port, config, ready))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port "
            "(0 picks a free one) or --host"
        ) from None
    click.echo("simulator stopped", err=True)


async def _serve_until_signalled(
    host: str, port: int, config: SimulatorConfig, ready: Callable[[str], None]
) -> None:
    """Serve until SIGINT or SIGTERM. The handlers are installed explicitly: a shell starts a
    background job with SIGINT ignored, and Ctrl-C must stop the simulator cleanly anyway."""
    task = asyncio.create_task(serve(host, port, config, ready=ready))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def simulator_banner(url: str, config: SimulatorConfig) -> str:
    """Where the simulator is, and the exports that point the provider plugins at it."""
    lines = [
        f"Provider simulator listening on {url}",
        f"  page     {url}/  (what each provider received)",
        f"  control  {url}/_sim/stats  {url}/_sim/faults  (POST faults, e.g. "
        '{"twilio": {"error_rate": 0.1}})  POST /_sim/reset',
        "",
        "Point the provider plugins at it (the simulator's own credentials; nothing leaves this "
        "machine):",
    ]
    lines += [f"  export {name}={_shell_quote(value)}" for name, value in
              plugin_settings(url, config).items()]  # fmt: skip
    defaults = ProviderConfig().to_dict()
    faults = []
    for name in FAULTED_PROVIDERS:
        changed = {k: v for k, v in config.provider(name).to_dict().items()
                   if k != "seed" and v != defaults[k]}  # fmt: skip
        if changed:
            faults.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    if faults:
        lines += ["", "Faults:", *faults]
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _shell_quote(value: str) -> str:
    safe = all(c.isalnum() or c in "@%+=:,./-_" for c in value)
    return value if safe else "'" + value.replace("'", "'\"'\"'") + "'"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- breach demo -------------------------------------------------------------------------------


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


@click.command()
@click.option(
    "--people", type=click.IntRange(1, 1_000_000), default=3000, show_default=True,
    help="Synthetic people to notify.",
)  # fmt: skip
@click.option(
    "--playbook",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PLAYBOOK,
    show_default=True,
    help="The playbook to run (relative paths are from the current folder).",
)
@click.option(
    "--failure-rate",
    type=click.FloatRange(0.0, 0.5),
    default=0.05,
    show_default=True,
    help="Share of provider requests that fail (5xx, 429, dropped connection), then retried.",
)
@click.option("--keep", is_flag=True, help="Keep the simulator's page up until Enter or Ctrl-C.")
@click.option(
    "--db",
    default=None,
    metavar="URL",
    help="Ledger database URL (default: a SQLite file in --outdir; BREACH_DATABASE_URL is "
    "ignored so a demo never writes into a real ledger).",
)
@click.option(
    "--outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the audience, ledger, published notice and filings (default: a new "
    "temporary folder, kept afterwards).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Audience and fault seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def demo(
    ctx: click.Context, people: int, playbook: Path, failure_rate: float, keep: bool,
    db: str | None, outdir: Path | None, seed: int, as_json: bool,
) -> None:  # fmt: skip
    """Run a playbook live against the local provider simulator, with synthetic people."""
    from .cli import out

    options = ctx.find_root().obj
    plugins_dir = getattr(options, "plugins_dir", None)
    regimes_file = getattr(options, "regimes", None)
    if not playbook.is_file():
        raise BreachError(
            f"playbook {playbook} not found: run `breach demo` from the repository root (where "
            "playbooks/ is), or pass --playbook PATH"
        )
    folder = outdir if outdir is not None else Path(tempfile.mkdtemp(prefix="breach-demo-"))
    console = Console(stderr=True) if as_json else out
    runner = DemoRun(
        playbook=playbook, people=people, failure_rate=failure_rate, outdir=folder, db=db,
        seed=seed, console=console, plugins_dir=plugins_dir, regimes_file=regimes_file,
        progress=not as_json,
    )  # fmt: skip
    with runner:
        result = runner.run()
        if as_json:
            click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
        else:
            print_report(result, console, keep=keep)
        if keep:
            _wait_for_enter(console)
    if not result.finished:
        raise click.exceptions.Exit(130)
    if not result.agrees:
        raise click.exceptions.Exit(1)


class DemoRun:
    """One demo: the simulator, the audience, the incident and the engine run."""

    def __init__(
        self,
        *,
        playbook: Path,
        people: int,
        failure_rate: float,
        outdir: Path,
        db: str | None,
        seed: int,
        console: Console,
        plugins_dir: Path | None = None,
        regimes_file: Path | None = None,
        progress: bool = True,
    ) -> None:
        self.playbook_path = playbook
        self.people = people
        self.outdir = outdir
        self.db = db or f"sqlite:///{(outdir / 'demo.db').resolve()}"
        self.seed = seed
        self.console = console
        self.plugins_dir = plugins_dir
        self.regimes_file = regimes_file
        self.progress = progress
        faults = {name: failure_mix(failure_rate) for name in FAULTED_PROVIDERS}
        self.failure_rate = failure_rate
        self.simulator = Simulator(SimulatorConfig(seed=seed, providers=faults))

    def __enter__(self) -> DemoRun:
        self.simulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.simulator.stop()

    def host(self, playbook: Playbook, probe: PluginHost) -> PluginHost:
        """Plugins pointed at the simulator. Every other notifier setting of the environment
        (those ``probe``'s notifiers declare) is left out, so nothing the shell exports, a real
        API key or a real endpoint, takes part in a demo."""
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
        return PluginHost(plugins_dir=self.plugins_dir, settings=settings)

    def run(self) -> DemoResult:
        """Generate the audience, trigger, approve, deliver until idle, and compare counts."""
        from .progress import ProgressView
        from .synthetic import generate_audience

        started = time.monotonic()
        self.outdir.mkdir(parents=True, exist_ok=True)
        regimes = load_regimes(self.regimes_file)
        probe = PluginHost(plugins_dir=self.plugins_dir, settings={})
        playbook = load_playbook(self.playbook_path, host=probe, regimes=regimes)
        host = self.host(playbook, probe)
        audience = self.outdir / "audience.csv"
        stats = generate_audience(audience, self.people, seed=self.seed)
        say = self.console.print
        say(f"[bold]breach demo[/bold]: {playbook.title} ({playbook.id} v{playbook.version}), "
            f"live against the provider simulator at {self.simulator.url}")  # fmt: skip
        say(f"  people    {stats.rows:,} synthetic ({audience}): {stats.with_phone:,} with a "
            f"phone, {stats.with_email:,} with an e-mail address, {stats.with_push:,} with a "
            f"push token, {stats.invalid:,} with a deliberately invalid contact")  # fmt: skip
        say(f"  faults    {self.failure_rate:.0%} of provider requests fail (5xx, 429, dropped "
            "connection); the engine retries them")  # fmt: skip
        current = now()
        aware_at = overdue_aware_at(playbook, regimes, current)
        result = api.trigger(
            self.playbook_path, audience=str(audience), facts=demo_facts(playbook, self.people),
            aware_at=aware_at, mode="live", db=self.db, host=host,
            regimes_file=self.regimes_file, source="demo",
        )  # fmt: skip
        incident_id = result.incident_id
        hours = (current - aware_at).total_seconds() / 3600
        say(f"  incident  {incident_id}, aware {hours:.0f}h ago so that every step is due now")
        approved = []
        for step in playbook.steps:
            if step.approval is not None:
                api.approve(incident_id, step.id, by=APPROVER, db=self.db)
                approved.append(step.id)
                say(f"  approved  {step.id} (role {step.approval.role}) as {APPROVER!r}; in a "
                    f"real incident that role runs `breach approve {incident_id} {step.id} "
                    "--by NAME`")  # fmt: skip
        settings = DispatchSettings(rates=DEMO_RATES, concurrency=DEMO_CONCURRENCY,
                                    policy=DEMO_POLICY, circuit_cooldown=2.0)  # fmt: skip
        _show_progress_lines(self.progress and not self.console.is_terminal)
        view = ProgressView(self.console, interval=2.0) if self.progress else None
        try:
            report = api.run(db=self.db, host=host, settings=settings, until_idle=True,
                             regimes_file=self.regimes_file, on_tick=view)  # fmt: skip
        finally:
            if view is not None:
                view.close()
        status = api.status(incident_id, db=self.db, host=host)
        channels = self.compare(incident_id)
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

    def compare(self, incident_id: str) -> list[ChannelCount]:
        """Per provider channel: messages the simulator accepted, deliveries the ledger holds."""
        accepted = Counter(m.channel for m in self.simulator.accepted())
        by_channel = ledger_by_channel(self.db, incident_id)
        channels = (set(accepted) | set(by_channel)) & set(PROVIDER_OF_CHANNEL)
        return [
            ChannelCount(c, PROVIDER_OF_CHANNEL[c], accepted[c], by_channel.get(c, Counter()))
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


def ledger_by_channel(db: str, incident_id: str) -> dict[str, Counter[str]]:
    """channel -> delivery state -> count, for one incident."""
    ledger = Ledger(db)
    try:
        with ledger.session() as s:
            rows = s.execute(
                select(Delivery.channel, Delivery.state, func.count())
                .where(Delivery.incident_id == incident_id)
                .group_by(Delivery.channel, Delivery.state)
            ).all()
    finally:
        ledger.close()
    out: dict[str, Counter[str]] = {}
    for channel, state, n in rows:
        out.setdefault(str(channel), Counter())[str(state)] = int(n)
    return out


def _show_progress_lines(enabled: bool) -> None:
    """Without a terminal the progress view logs a line now and then; let those through."""
    if not enabled:
        return
    from .logs import configure

    configure(level="WARNING")
    logging.getLogger("orchestrator.progress").setLevel(logging.INFO)


def print_report(result: DemoResult, console: Console, *, keep: bool) -> None:
    """The status table, the simulator against the ledger, where the files are."""
    from .cli import print_status

    print_status(result.status)
    duplicates = int(result.status.get("possible_duplicates") or 0)
    table = Table("provider", "channel", "requests", "faults injected", "accepted", "sent",
                  "agree", title="Providers: accepted by the simulator, sent in the ledger",
                  )  # fmt: skip
    shown: set[str] = set()
    for c in result.channels:
        stats = result.provider_stats.get(c.provider, {})
        first = c.provider not in shown
        shown.add(c.provider)
        outcomes = stats.get("outcomes", {})
        faults = " · ".join(
            f"{label} {outcomes[key]:,}"
            for key, label in (("error", "5xx"), ("throttled", "429"), ("rate_limited", "429"),
                               ("dropped", "drop"))
            if outcomes.get(key)
        )  # fmt: skip
        agree = "yes" if c.agrees(duplicates) else "[red]NO[/red]"
        table.add_row(c.provider if first else "", c.channel,
                      f"{stats.get('requests', 0):,}" if first else "",
                      (faults or "none") if first else "", f"{c.accepted:,}", f"{c.sent:,}",
                      agree)  # fmt: skip
    console.print(table)
    counts = result.engine_counts
    console.print(
        f"engine: {counts.get('sent', 0):,} sent, {counts.get('retried', 0):,} retries after "
        f"provider faults, {counts.get('failed', 0):,} refused, {counts.get('dead', 0):,} gave up"
    )
    if not result.channels:
        console.print("No step of this run sent through a provider (SMS, call, e-mail, push).")
    elif result.agrees:
        totals = ", ".join(f"{c.channel} {c.sent:,}" for c in result.channels)
        console.print(f"[green]Simulator and ledger agree[/green] on every channel ({totals}).")
    else:
        console.print(
            "[red]Simulator and ledger disagree[/red]: a message the provider accepted is not "
            "recorded as sent (see the table); this is a bug, please report it with --json output"
        )
    for label, pattern, folder in (("public notice", "*/index.html", "public"),
                                   ("regulator filing", "*.json", "filings")):  # fmt: skip
        for path in sorted((result.outdir / folder).glob(pattern)):
            console.print(f"{label}: {path}")
    console.print(f"ledger: {result.db}  (`breach status {result.incident_id} --db URL` again)")
    if not result.finished:
        console.print("[yellow]stopped before every delivery settled[/yellow]")
    console.print(f"done in {result.seconds:.1f}s")
    if keep:
        console.print(f"Simulator page: {result.page}  (press Enter or Ctrl-C to stop it)")
    else:
        console.print(f"Simulator page: {result.page}  (stopped now; add --keep to browse it)")


def _wait_for_enter(console: Console) -> None:
    with contextlib.suppress(EOFError, KeyboardInterrupt):  # no terminal, or Ctrl-C: done
        input()
    console.print("simulator stopped")
