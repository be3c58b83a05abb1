"""Server commands: ``breach serve`` and ``breach routes test``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BreachError
from ..ledger import ledger_exists
from ..logs import configure, register_secret
from ..server import alertmanager as am
from ..server import grafana
from ..server.config import DEFAULT_CONFIG, load_config
from ..server.intake import Decision, Intake
from ..session import Breach
from .context import (
    Options,
    db_option,
    echo_json,
    log_json_option,
    log_libraries_option,
    pass_breach,
    pass_options,
)
from .tables import print_decision

log = logging.getLogger("orchestrator.server")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, help="Server config file (routes, secrets, audiences).",
)  # fmt: skip


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
@log_json_option
@log_libraries_option
@click.option(
    "--engine/--no-engine",
    "with_engine",
    default=True,
    show_default=True,
    help="Run the delivery engine in this process (live routes need it).",
)
@pass_breach()
def serve(
    breach: Breach, config_path: Path, address: str | None, port: int | None, log_json: bool,
    log_libraries: str, with_engine: bool,
) -> None:  # fmt: skip
    """Serve webhooks (Alertmanager, signed JSON), provider receipts and /healthz."""
    import uvicorn

    from ..server.app import create_app

    config = load_config(config_path, host=breach.host, regimes_file=breach.regimes_file)
    breach.ledger  # noqa: B018 - an unreachable ledger stops the start, not the first alert
    configure(json=log_json, libraries=log_libraries)
    for secret in config.secrets():
        register_secret(secret)
    engine = breach.engine(kind="serve") if with_engine else None
    app = create_app(config, breach, engine=engine)
    address = address or config.host
    sock = _listen(address, config.port if port is None else port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, proxy_headers=False, server_header=False,
        lifespan="on", limit_concurrency=config.max_connections, timeout_keep_alive=5,
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
    type=click.Choice(["auto", "alertmanager", "grafana", "generic"]),
    default="auto",
    show_default=True,
    help="Which endpoint the payload is for (auto: by its shape).",
)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_options
def routes_test(
    options: Options, payload: Path, config_path: Path, hook: str, db: str | None, as_json: bool
) -> None:
    """Show which route PAYLOAD would take, its facts, and the incident it would create or
    join, without creating anything. Exit 0 when a route fires, 1 when none does."""
    try:
        document = json.loads(payload.read_text("utf-8"))
    except OSError as exc:
        raise BreachError(f"cannot read {payload}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BreachError(f"{payload} is not JSON: {exc}") from None
    except RecursionError:
        raise BreachError(f"{payload}: the JSON is nested too deeply") from None
    if hook == "auto":
        hook = "generic"
        if _looks_like_alertmanager(document):
            hook = "grafana" if document.get("version") == grafana.VERSION else "alertmanager"
    # reading a ledger that does not exist would create it; treat it as empty instead
    with options.open(db if ledger_exists(db) else _EMPTY_LEDGER) as breach:
        config = load_config(config_path, host=breach.host, regimes_file=breach.regimes_file)
        decision = _decide(Intake(config, breach), hook, document, payload)
    summary = decision.summary()
    if decision.action == "create" and decision.mode == "live":
        summary["note"] = "live routes answer 503 until the live delivery engine runs"
    if as_json:
        echo_json(summary)
    else:
        print_decision(summary, config)
    if decision.action == "no-route":
        sys.exit(1)  # not ctx.exit: `breach` runs click without standalone mode


_EMPTY_LEDGER = "sqlite://"  # in memory: nothing to find, nothing left behind


def _decide(intake: Intake, hook: str, document: Any, payload: Path) -> Decision:
    """What the server would do with ``document`` on ``hook``, without doing it."""
    if hook == "alertmanager":
        try:
            notification = am.parse(document)
        except ValueError as exc:
            raise BreachError(f"{payload}: not an Alertmanager notification: {exc}") from None
        return intake.decide_alertmanager(notification)
    if hook == "grafana":
        try:
            notification = grafana.parse(document)
        except ValueError as exc:
            raise BreachError(f"{payload}: not a Grafana notification: {exc}") from None
        return intake.decide_alertmanager(notification, hook="grafana")
    if not isinstance(document, dict):
        raise BreachError(f"{payload}: a generic payload must be a JSON object")
    return intake.decide_generic(document)


def _looks_like_alertmanager(document: Any) -> bool:
    return isinstance(document, dict) and "groupKey" in document and "alerts" in document


@click.command()
@click.option("--name", required=True, help="Who (or what) the token is for: alice, grafana...")
@click.option(
    "--role", "roles", multiple=True, required=True, metavar="ROLE",
    help="viewer, commander, or an approval role playbooks name (dpo, legal); repeatable.",
)  # fmt: skip
def token(name: str, roles: tuple[str, ...]) -> None:
    """Make a commander API token: the token once on stderr, its config entry on stdout.

    The config keeps only the token's SHA-256, so a leaked config file grants nothing.
    """
    from ..server.tokens import new_token

    value, entry = new_token(name, list(roles))
    click.echo(f"token for {name} (shown once; give it to them, then forget it): {value}", err=True)
    click.echo(entry)
