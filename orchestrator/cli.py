"""The ``breach`` command line: thin verbs over :mod:`orchestrator.api`.

Every command that prints data takes ``--json``; every command that touches the ledger takes
``--db``. Expected failures print one clear message (no traceback) and exit non-zero.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table

from . import api
from . import facts as facts_mod
from .errors import BreachError, ValidationFailed
from .notifier import Mode
from .pluginhost import PluginHost
from .version import __version__

F = TypeVar("F", bound=Callable[..., Any])
out = Console()
err = Console(stderr=True, soft_wrap=True)

db_option = click.option(
    "--db", envvar="BREACH_DATABASE_URL", default=None, metavar="URL",
    help="Ledger database URL (default: sqlite:///breach.db, or BREACH_DATABASE_URL).",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


class State:
    """Options shared by every command."""

    def __init__(self, plugins_dir: Path | None, regimes: Path | None) -> None:
        self.plugins_dir = plugins_dir
        self.regimes = regimes
        self._host: PluginHost | None = None

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = PluginHost(plugins_dir=self.plugins_dir)
        return self._host


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="breach")
@click.option(
    "--plugins-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also load every plugin module in this directory.",
)
@click.option(
    "--regimes",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="YAML file overriding the built-in notification regimes and deadlines.",
)
@click.pass_context
def cli(ctx: click.Context, plugins_dir: Path | None, regimes: Path | None) -> None:
    """Breach-notification orchestrator: playbooks in, every notice owed out."""
    ctx.obj = State(plugins_dir, regimes)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def validate(state: State, paths: tuple[Path, ...]) -> None:
    """Check playbooks; print every problem as FILE:LINE:COLUMN: message."""
    problems = api.validate(list(paths), host=state.host, regimes_file=state.regimes)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        files = len({p.file for p in problems})
        err.print(f"[red]{len(problems)} problem(s) in {files} file(s)[/red]")
        sys.exit(1)
    err.print(f"[green]{len(paths)} playbook(s) valid[/green]")


@cli.command()
def schema() -> None:
    """Print the playbook JSON Schema (for editors)."""
    from .playbook import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@json_option
@click.pass_obj
def plugins(state: State, as_json: bool) -> None:
    """List plugins: version, hooks, channels, audience sources, missing settings."""
    infos = state.host.plugins()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    table = Table("plugin", "version", "hooks", "channels", "sources", "settings")
    for i in infos:
        settings = ("missing: " + ", ".join(i.missing_settings)) if i.missing_settings else "ok"
        table.add_row(i.name, i.version, ", ".join(i.hooks), ", ".join(i.channels),
                      ", ".join(i.sources), settings)  # fmt: skip
    out.print(table)


@cli.command()
@json_option
@click.pass_obj
def regimes(state: State, as_json: bool) -> None:
    """List notification regimes and their deadlines (not legal advice)."""
    from .regimes import load_regimes

    table_data = load_regimes(state.regimes)
    if as_json:
        click.echo(json.dumps({k: v.model_dump() for k, v in table_data.items()}, indent=2))
        return
    table = Table("regime", "name", "deadline", "clock")
    for key, regime in table_data.items():
        table.add_row(key, regime.name, str(regime.deadline), regime.clock)
    out.print(table)


@cli.command()
@click.argument("playbook", type=click.Path(path_type=Path))
@click.option(
    "--audience",
    "-a",
    required=True,
    metavar="SOURCE",
    help="people.csv, data.jsonl, csv:PATH, jsonl:PATH or sql:URL (with --query).",
)
@click.option("--query", default=None, help="SQL query for an sql: audience (bound parameters).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="A bound parameter of --query."
)
@click.option(
    "--fact",
    "-f",
    "fact_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An incident fact (repeatable).",
)
@click.option(
    "--aware-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]),
    default=None,
    help="When the organisation became aware (UTC).",
)
@click.option(
    "--dry-run",
    "mode",
    flag_value="dry-run",
    help="Render everything into --outbox at once; send nothing.",
)
@click.option(
    "--sandbox",
    "mode",
    flag_value="sandbox",
    help="Schedule for delivery through the providers' validate-only modes.",
)
@click.option("--live", "mode", flag_value="live", help="Schedule for real delivery.")
@click.option(
    "--redirect-to",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Staging: send every message to one of these test recipients "
    "(one phone number, e-mail or push token per line).",
)
@click.option(
    "--outbox",
    type=click.Path(path_type=Path),
    default=None,
    help="Dry-run output folder (default: outbox/INCIDENT).",
)
@db_option
@json_option
@click.pass_obj
def trigger(
    state: State, playbook: Path, audience: str, query: str | None, params: tuple[str, ...],
    fact_pairs: tuple[str, ...], aware_at: datetime | None, mode: str | None,
    redirect_to: Path | None, outbox: Path | None, db: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Declare an incident from PLAYBOOK and notify its audience."""
    if mode is None:
        raise click.UsageError("choose how to notify: --dry-run, --sandbox or --live")
    options: dict[str, Any] = {}
    if query:
        options["query"] = query
    if params:
        options["params"] = facts_mod.parse_assignments(list(params))
    given = facts_mod.parse_assignments(list(fact_pairs))
    if aware_at is not None and aware_at.tzinfo is None:
        aware_at = aware_at.replace(tzinfo=UTC)
    result = api.trigger(
        playbook, audience=audience, audience_options=options, facts=given, aware_at=aware_at,
        mode=cast(Mode, mode), outbox=outbox, redirect_to=redirect_to, db=db, host=state.host,
        regimes_file=state.regimes,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False, default=str))
        return
    if mode == "dry-run":
        print_summary(result.summary)
        return
    print_status(result.summary)
    err.print(
        f"{result.incident_id} scheduled ({mode}); `breach run` delivers it as steps fall due"
    )


def print_summary(summary: dict[str, Any]) -> None:
    """The dry-run report as tables: steps, channels with ETA, deadlines."""
    people = summary["audience"]["people"]
    out.print(f"[bold]{summary['incident']}[/bold]  {summary['playbook']['title']} "
              f"({summary['playbook']['id']} v{summary['playbook']['version']})  "
              f"mode: [yellow]{summary['mode']}[/yellow]  people: {people:,}")  # fmt: skip
    steps = Table("step", "channel", "at", "fired", "sent", "fallback", "skipped", title="Steps")
    notes: list[str] = []
    for s in summary["steps"]:
        states = s.get("states", {})
        steps.add_row(
            s["step"], s["channel"], s["offset"], "yes" if s["fired"] else "[dim]no[/dim]",
            f"{states.get('sent', 0) + states.get('pending', 0):,}", f"{s.get('fallback', 0):,}",
            f"{states.get('skipped', 0):,}",
        )  # fmt: skip
        if s["condition"]:
            verdict = "true" if s["condition_result"] else "false"
            notes.append(f"{s['step']}: condition `{s['condition']}` was {verdict}")
        if s.get("note"):
            notes.append(f"{s['step']}: {s['note']}")
        for reason, n in list(s.get("skipped_reasons", {}).items())[:3]:
            notes.append(f"{s['step']}: skipped {n:,} — {reason}")
    out.print(steps)
    for note in notes:
        out.print(f"  {note}", highlight=False)
    channels = Table("channel", "messages", "rate/s", "ETA", title="Channels")
    for name, c in sorted(summary["channels"].items()):
        channels.add_row(name, f"{c['messages']:,}", f"{c['rate_per_second']:g}",
                         _eta(c["eta_seconds"]))  # fmt: skip
    out.print(channels)
    if summary["deadlines"]:
        deadlines = Table("regulator", "regime", "rule", "due", title="Deadlines")
        for d in summary["deadlines"]:
            due = _when(d["due_at"]) if d["due_at"] else "no fixed clock"
            deadlines.add_row(d["name"], d["regime"], d["rule"], due)
        out.print(deadlines)
    out.print(f"outbox: {summary['outbox']}  (open index.html for previews)")


def _when(iso: str) -> str:
    """An ISO time as a commander reads it: ``2026-11-28 15:44 UTC``."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@cli.command()
@click.argument("incident", required=False)
@db_option
@json_option
def status(incident: str | None, db: str | None, as_json: bool) -> None:
    """Show one incident (steps, deliveries by state) or list recent incidents."""
    data = api.status(incident, db=db, host=PluginHost() if incident else None)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if incident is None:
        table = Table("incident", "playbook", "mode", "state", "aware at", "people", "title")
        for i in data["incidents"]:
            table.add_row(i["id"], i["playbook"], i["mode"], i["state"], i["aware_at"],
                          f"{i['people'] or 0:,}", i["title"])  # fmt: skip
        out.print(table)
        return
    print_status(data)


def print_status(data: dict[str, Any]) -> None:
    """One incident: header, steps with delivery counts and ETA, regulator deadlines."""
    out.print(f"[bold]{data['id']}[/bold] {data['title']}  mode: {data['mode']}  "
              f"state: {data['state']}  people: {data['people'] or 0:,}  "
              f"aware {data['elapsed_hours']}h ago")  # fmt: skip
    if data.get("redirected"):
        out.print("[yellow]staging: every message goes to the --redirect-to test recipients[/]")
    table = Table("step", "channel", "state", "due", "deliveries", "ETA")
    for s in data["steps"]:
        counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(s["deliveries"].items()))
        eta = _eta(s["eta_seconds"]) if s.get("eta_seconds") else ""
        table.add_row(s["step"], s["channel"], s["state"], s["due_at"] or "", counts, eta)
    out.print(table)
    if data.get("deadlines"):
        deadlines = Table("regulator", "regime", "due (UTC)", "time left")
        for d in data["deadlines"]:
            left = d.get("hours_left")
            text = (
                "no fixed clock"
                if left is None
                else (f"{left:.1f}h" if left >= 0 else f"[red]overdue {-left:.1f}h[/red]")
            )
            deadlines.add_row(d["name"], d["regime"], _when(d["due_at"]) if d["due_at"] else "",
                              text)  # fmt: skip
        out.print(deadlines)
    if data.get("possible_duplicates"):
        out.print(f"possible duplicates (lease expired mid-send): {data['possible_duplicates']:,}")


@cli.command()
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit once nothing is left to do without waiting for a future step.",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="NOTIFIER=PER_SECOND",
    help="Override a notifier's rate limit (repeatable).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Batches in flight per notifier.",
)
@click.option(
    "--lease",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds a claimed delivery stays reserved for its worker (plus the timeout).",
)
@click.option(
    "--send-timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds a notifier may take for one batch.",
)
@click.option("--max-attempts", type=click.IntRange(1, 100), default=8, show_default=True)
@click.option(
    "--retry-base",
    type=click.FloatRange(0.0),
    default=1.0,
    show_default=True,
    help="First backoff in seconds (doubles per attempt, full jitter).",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines (phone numbers, e-mails masked).")
@db_option
@click.pass_obj
def run(
    state: State, until_idle: bool, rates: tuple[str, ...], concurrency: int, lease: float,
    send_timeout: float, max_attempts: int, retry_base: float, log_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Deliver live incidents: fire due steps, send, retry; safe to kill and start again."""
    from .dispatch import DispatchSettings
    from .logs import configure
    from .progress import ProgressView
    from .retry import RetryPolicy

    configure(json=log_json)
    overrides = {}
    for name, value in facts_mod.parse_assignments(list(rates)).items():
        try:
            overrides[name] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{name}={value}: a rate is a number", param_hint="--rate"
            ) from None
    settings = DispatchSettings(
        rates=overrides, concurrency=concurrency, lease_seconds=lease, send_timeout=send_timeout,
        policy=RetryPolicy(max_attempts=max_attempts, base=retry_base),
    )  # fmt: skip
    view = ProgressView(err)
    try:
        report = api.run(db=db, host=state.host, settings=settings, until_idle=until_idle,
                         regimes_file=state.regimes, on_tick=view)  # fmt: skip
    finally:
        view.close()
    err.print("run ended: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.counts.items())))


@cli.command()
@click.argument("incident")
@click.argument("step")
@click.option("--by", required=True, help="Who approves (recorded in the audit trail).")
@db_option
@json_option
def approve(incident: str, step: str, by: str, db: str | None, as_json: bool) -> None:
    """Open the approval gate of STEP so it fires when due."""
    result = api.approve(incident, step, by=by, db=db)
    if as_json:
        click.echo(json.dumps(result))
        return
    err.print(f"{incident} {step}: approved by {by}")


@cli.command()
@click.argument("incident")
@click.option("--by", required=True, help="Who cancels (recorded in the audit trail).")
@click.option("--reason", default=None)
@db_option
@json_option
def cancel(incident: str, by: str, reason: str | None, db: str | None, as_json: bool) -> None:
    """Stop INCIDENT: unfired steps cancelled, pending deliveries skipped."""
    result = api.cancel(incident, by=by, reason=reason, db=db)
    if as_json:
        click.echo(json.dumps(result))
        return
    err.print(f"{incident} cancelled; {result['skipped']:,} pending deliveries skipped")


@cli.command("gen-audience")
@click.option("--rows", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--invalid-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option(
    "--out",
    "path",
    type=click.Path(path_type=Path),
    default=Path("audience.csv"),
    show_default=True,
    help="Output file: .csv or .jsonl.",
)
def gen_audience(rows: int, seed: int, invalid_rate: float, path: Path) -> None:
    """Write a synthetic affected-people file (deterministic for a seed)."""
    from .synthetic import generate_audience

    stats = generate_audience(path, rows, seed=seed, invalid_rate=invalid_rate)
    err.print(f"wrote {path}: {stats}")


# Server and demo commands live with what they drive; the CLI only lists them.
from .demo import demo, simulate  # noqa: E402
from .server.commands import routes, serve  # noqa: E402

cli.add_command(serve)
cli.add_command(routes)
cli.add_command(demo)
cli.add_command(simulate)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: BreachError -> one message and its exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="breach", standalone_mode=False)
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(exc.exit_code)
    except BreachError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line; the traceback on request
        if os.environ.get("BREACH_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} "
                  "(set BREACH_DEBUG=1 to see the traceback, and please report it)",
                  highlight=False)  # fmt: skip
        sys.exit(70)


if __name__ == "__main__":
    main()
