"""Trying it out on one machine: ``breach demo``, ``breach simulate``, ``breach gen-audience``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from ..demo import DEFAULT_PLAYBOOK, DemoRun
from ..errors import ConfigurationError
from ..logs import configure
from ..progress import ProgressView
from ..simulator import SimulatorConfig, serve
from ..simulator.callbacks import is_loopback_host
from ..simulator.cli import load_config_file, simulator_banner
from ..synthetic import generate_audience
from .context import Options, echo_json, err, json_option, out, pass_options
from .tables import print_demo_report


@click.command()
@click.option(
    "--people", type=click.IntRange(1, 1_000_000), default=3000, show_default=True,
    help="Synthetic people to notify.",
)  # fmt: skip
@click.option(
    "--playbook", default=DEFAULT_PLAYBOOK, show_default=True, metavar="PLAYBOOK",
    help="A shipped playbook's id (see `breach playbooks`) or a playbook file.",
)  # fmt: skip
@click.option(
    "--failure-rate", type=click.FloatRange(0.0, 0.5), default=0.05, show_default=True,
    help="Share of provider requests that fail (5xx, 429, dropped connection), then retried.",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the simulator's page up until Enter or Ctrl-C.")
@click.option(
    "--db", default=None, metavar="URL",
    help="Ledger database URL (default: a SQLite file in --outdir; BREACH_DATABASE_URL is "
    "ignored so a demo never writes into a real ledger).",
)  # fmt: skip
@click.option(
    "--outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder for the audience, ledger, published notice and filings (default: a new "
    "temporary folder, kept afterwards).",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Audience and fault seed.")
@json_option
@pass_options
def demo(
    options: Options, people: int, playbook: str, failure_rate: float, keep: bool,
    db: str | None, outdir: Path | None, seed: int, as_json: bool,
) -> None:  # fmt: skip
    """Run a playbook live against the local provider simulator, with synthetic people."""
    folder = outdir if outdir is not None else Path(tempfile.mkdtemp(prefix="breach-demo-"))
    console = err if as_json else out
    _show_progress_lines(not as_json and not console.is_terminal)
    view = None if as_json else ProgressView(console, interval=2.0)
    runner = DemoRun(
        playbook=playbook, people=people, failure_rate=failure_rate, outdir=folder, db=db,
        seed=seed, plugins_dir=options.plugins_dir, regimes_file=options.regimes,
        say=console.print, on_tick=view,
    )  # fmt: skip
    with runner:
        try:
            result = runner.run()
        finally:
            if view is not None:
                view.close()
        if as_json:
            echo_json(result.as_dict())
        else:
            print_demo_report(result, console, keep=keep)
        if keep:
            _wait_for_enter(console)
    if not result.finished:
        raise click.exceptions.Exit(130)
    if not result.agrees:
        raise click.exceptions.Exit(1)


def _show_progress_lines(enabled: bool) -> None:
    """Without a terminal the progress view logs a line now and then; let those through."""
    if not enabled:
        return
    configure(level="WARNING")
    logging.getLogger("orchestrator.progress").setLevel(logging.INFO)


def _wait_for_enter(console: Console) -> None:
    with contextlib.suppress(EOFError, KeyboardInterrupt):  # no terminal, or Ctrl-C: done
        input()
    console.print("simulator stopped")


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
    if not is_loopback_host(host):
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


@click.command("gen-audience")
@click.option("--rows", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--invalid-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option(
    "--out", "path", type=click.Path(path_type=Path), default=Path("audience.csv"),
    show_default=True, help="Output file: .csv or .jsonl.",
)  # fmt: skip
def gen_audience(rows: int, seed: int, invalid_rate: float, path: Path) -> None:
    """Write a synthetic affected-people file (deterministic for a seed)."""
    stats = generate_audience(path, rows, seed=seed, invalid_rate=invalid_rate)
    err.print(
        f"wrote {path}: {stats.rows:,} people, {stats.with_phone:,} with a phone number, "
        f"{stats.with_email:,} with an e-mail address, {stats.with_push:,} with a push token; "
        f"{stats.invalid:,} with a deliberately invalid contact",
        highlight=False,
    )
