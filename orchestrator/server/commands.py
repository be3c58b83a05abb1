"""CLI commands of the server: ``breach serve`` and ``breach routes test``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import BreachError
from .config import DEFAULT_CONFIG, ServerConfig, load_config

if TYPE_CHECKING:
    from ..pluginhost import PluginHost

log = logging.getLogger("orchestrator.server")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, help="Server config file (routes, secrets, audiences).",
)  # fmt: skip
db_option = click.option(
    "--db", envvar="BREACH_DATABASE_URL", default=None, metavar="URL",
    help="Ledger database URL (default: sqlite:///breach.db, or BREACH_DATABASE_URL).",
)  # fmt: skip


def _host(ctx: click.Context) -> PluginHost:
    """The plugin host of the ``breach`` group (honours --plugins-dir)."""
    state = ctx.find_root().obj
    if state is None:  # the command was invoked on its own, outside the `breach` group
        from ..pluginhost import PluginHost

        return PluginHost()
    host: PluginHost = state.host
    return host


def _regimes(ctx: click.Context) -> Path | None:
    state = ctx.find_root().obj
    regimes: Path | None = getattr(state, "regimes", None)
    return regimes


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.create_server((address, port), family=family)
    except OSError as exc:
        raise BreachError(f"cannot listen on {address}:{port}: {exc.strerror or exc} "
                          "(choose another --port or --host)") from None  # fmt: skip


@click.command()
@config_option
@click.option(
    "--host",
    "address",
    default=None,
    metavar="ADDRESS",
    help="Address to listen on (default: [server] host, else 127.0.0.1).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (default: [server] port, else 8080; 0 picks a free one).",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines (phone numbers, e-mails masked).")
@click.option(
    "--engine/--no-engine",
    "with_engine",
    default=True,
    show_default=True,
    help="Run the delivery engine in this process (live routes need it).",
)
@db_option
@click.pass_context
def serve(
    ctx: click.Context, config_path: Path, address: str | None, port: int | None,
    log_json: bool, with_engine: bool, db: str | None,
) -> None:  # fmt: skip
    """Serve webhooks (Alertmanager, signed JSON), provider receipts and /healthz."""
    import uvicorn

    from ..engine import Engine
    from ..ledger import Ledger
    from ..logs import configure, register_secret
    from .app import create_app

    host = _host(ctx)
    config = load_config(config_path, host=host, regimes_file=_regimes(ctx))
    Ledger(db).close()  # an unreachable ledger stops the start, not the first alert
    configure(json=log_json)
    for secret in config.secrets():
        register_secret(secret)
    engine = Engine(db=db, host=host, regimes_file=_regimes(ctx)) if with_engine else None
    app = create_app(config, host=host, db=db, engine=engine)
    address = address or config.host
    sock = _listen(address, config.port if port is None else port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, proxy_headers=False, server_header=False,
        lifespan="on",
    ))  # fmt: skip
    log.info("listening", extra={"url": f"http://{address}:{bound}", "config": str(config_path),
                                 "routes": [r.name for r in config.routes],
                                 "force_mode": config.force_mode})  # fmt: skip
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal; after a
    # graceful stop that is a normal exit (0), not "aborted"
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise BreachError("the server did not start; the reason is in the log above")
    log.info("stopped")


class _Stopped(Exception):
    """SIGTERM, after uvicorn's graceful shutdown."""


def _stopped(_signum: int, _frame: object) -> None:
    raise _Stopped


@click.group()
def routes() -> None:
    """Inspect webhook routing rules."""


@routes.command("test")
@click.argument("payload", type=click.Path(path_type=Path))
@config_option
@click.option(
    "--hook",
    type=click.Choice(["auto", "alertmanager", "generic"]),
    default="auto",
    show_default=True,
    help="Which endpoint the payload is for (auto: by its shape).",
)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def routes_test(
    ctx: click.Context, payload: Path, config_path: Path, hook: str, db: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Show which route PAYLOAD would take, its facts, and the incident it would create or
    join, without creating anything. Exit 0 when a route fires, 1 when none does."""
    from . import alertmanager as am
    from .intake import Intake

    try:
        document = json.loads(payload.read_text("utf-8"))
    except OSError as exc:
        raise BreachError(f"cannot read {payload}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BreachError(f"{payload} is not JSON: {exc}") from None
    config = load_config(config_path, host=_host(ctx), regimes_file=_regimes(ctx))
    if hook == "auto":
        hook = "alertmanager" if _looks_like_alertmanager(document) else "generic"
    # reading a ledger that does not exist would create it; treat it as empty instead
    intake = Intake(config, host=_host(ctx), db=db if _ledger_exists(db) else _EMPTY_LEDGER)
    if hook == "alertmanager":
        try:
            notification = am.parse(document)
        except ValueError as exc:
            raise BreachError(f"{payload}: not an Alertmanager notification: {exc}") from None
        decision = intake.decide_alertmanager(notification)
    else:
        if not isinstance(document, dict):
            raise BreachError(f"{payload}: a generic payload must be a JSON object")
        decision = intake.decide_generic(document)
    summary = decision.summary()
    if decision.action == "create" and decision.mode == "live" and not intake.live_available:
        summary["note"] = "live routes answer 503 until the live delivery engine runs"
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    else:
        _print_decision(summary, config)
    if decision.action == "no-route":
        sys.exit(1)  # not ctx.exit: `breach` runs click without standalone mode


_EMPTY_LEDGER = "sqlite://"  # in memory: nothing to find, nothing left behind


def _ledger_exists(db: str | None) -> bool:
    from sqlalchemy.engine import make_url

    from ..ledger import default_url

    url = make_url(db or default_url())
    if not url.drivername.startswith("sqlite"):
        return True
    database = url.database
    return bool(database) and database != ":memory:" and Path(str(database)).exists()


def _looks_like_alertmanager(document: Any) -> bool:
    return isinstance(document, dict) and "groupKey" in document and "alerts" in document


def _print_decision(summary: dict[str, Any], config: ServerConfig) -> None:
    echo = click.echo
    action = summary["action"]
    echo(f"hook:     {summary['hook']}")
    if "route" in summary:
        echo(f"route:    {summary['route']} (playbook {summary['playbook']}, audience "
             f"{summary['audience']})")  # fmt: skip
    if action == "create":
        echo(f"action:   would create a new incident in mode {summary['mode']}")
        echo(f"aware at: {summary['aware_at']}")
        echo("facts:")
        for name, value in sorted(summary["facts"].items()):
            echo(f"  {name} = {json.dumps(value, ensure_ascii=False, default=str)}")
    elif action == "join":
        echo(f"action:   would join open incident {summary['incident']}")
        for kind, items in summary["alerts"].items():
            if items:
                echo(f"  {kind}: {', '.join(items)}")
        for name, value in sorted(summary["facts_changed"].items()):
            echo(f"  fact {name} -> {json.dumps(value, ensure_ascii=False, default=str)}")
    elif action == "no-route":
        echo('action:   none: no route matched (the server answers 202 "no route")')
        for line in summary.get("tried", []):
            echo(f"  {line}")
    else:
        echo(f"action:   none: {summary.get('reason', '')}")
    if summary.get("dedupe_key"):
        echo(f"dedupe:   {summary['dedupe_key']}")
    if summary.get("note"):
        echo(f"note:     {summary['note']}")
    if config.force_mode:
        echo(f"(force_mode = {config.force_mode!r} in {config.path})")
