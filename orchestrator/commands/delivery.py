"""``breach run``: the delivery engine in the foreground."""

from __future__ import annotations

import click
from rich.text import Text

from .. import facts as facts_mod
from ..dispatch import DispatchSettings
from ..errors import ConfigurationError
from ..logs import configure
from ..progress import ProgressView
from ..retry import RetryPolicy
from ..session import Breach
from ..workers import DEFAULT_WORKER_TIMEOUT
from .context import err, log_json_option, log_libraries_option, pass_breach


@click.command()
@click.option(
    "--until-idle", is_flag=True,
    help="Exit once nothing is left to do without waiting for a future step.",
)  # fmt: skip
@click.option(
    "--rate", "rates", multiple=True, metavar="NOTIFIER=PER_SECOND",
    help="Override a notifier's rate limit (repeatable).",
)  # fmt: skip
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
    help="Batches in flight per notifier.",
)  # fmt: skip
@click.option(
    "--lease", type=click.FloatRange(1), default=60.0, show_default=True,
    help="Seconds a claimed delivery stays reserved for its worker (plus the timeout).",
)  # fmt: skip
@click.option(
    "--send-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
    help="Seconds a notifier may take for one batch.",
)  # fmt: skip
@click.option(
    "--worker-timeout", type=click.FloatRange(1), default=DEFAULT_WORKER_TIMEOUT,
    show_default=True,
    help="Seconds without a heartbeat after which another worker takes this one's fan-outs over.",
)  # fmt: skip
@click.option("--max-attempts", type=click.IntRange(1, 100), default=8, show_default=True)
@click.option(
    "--retry-base", type=click.FloatRange(0.0), default=1.0, show_default=True,
    help="First backoff in seconds (doubles per attempt, full jitter).",
)  # fmt: skip
@log_json_option
@log_libraries_option
@pass_breach()
def run(
    breach: Breach, until_idle: bool, rates: tuple[str, ...], concurrency: int, lease: float,
    send_timeout: float, worker_timeout: float, max_attempts: int, retry_base: float,
    log_json: bool, log_libraries: str,
) -> None:  # fmt: skip
    """Deliver live incidents: fire due steps, send, retry; safe to kill and start again."""
    configure(json=log_json, libraries=log_libraries)
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
        worker_timeout=worker_timeout,
    )  # fmt: skip
    view = ProgressView(err)
    try:
        report = breach.run(settings, until_idle=until_idle, on_tick=view)
    finally:
        view.close()
    err.print("run ended: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.counts.items())))
    for line in report.blocked:
        err.print(Text.assemble(("blocked ", "bold red"), line))
    if report.blocked:
        err.print("a blocked step is not retried: set what it names, then trigger again")
        raise SystemExit(ConfigurationError.exit_code)
