"""The ``breach`` command line: thin verbs over :class:`~orchestrator.session.Breach`.

One module per group of commands; each command that touches the ledger takes ``--db`` and
receives its session from :func:`~orchestrator.commands.context.pass_breach`. Every command that
prints data takes ``--json``. Expected failures print one clear message (no traceback) and exit
non-zero.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.text import Text

from ..errors import BreachError, ValidationFailed
from ..version import __version__
from .clocks import deadline, event
from .context import Options, err
from .delivery import run
from .demo import demo, gen_audience, simulate
from .evidence import audit, evidence
from .incidents import approve, cancel, reject, status, timeline, trigger, update
from .playbooks import list_playbooks, plugins, regimes, schema, validate
from .reports import report
from .server import routes, serve, token


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
    ctx.obj = Options(plugins_dir=plugins_dir, regimes=regimes)


for command in (validate, list_playbooks, schema, regimes, plugins, trigger, status, approve,
                reject, cancel, update, timeline, event, deadline, report, audit, evidence, run,
                serve, routes, token, demo, simulate, gen_audience):  # fmt: skip
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: BreachError -> one message and its exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="breach", standalone_mode=False)
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(exc.exit_code)
    except BreachError as exc:
        err.print(Text.assemble(("error:", "red"), f" {exc}"))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.UsageError as exc:
        # one line, like every other error; the usage is one --help away
        where = exc.ctx.command_path if exc.ctx is not None else "breach"
        err.print(Text.assemble(("error:", "red"),
                                f" {exc.format_message()} (see `{where} --help`)"))  # fmt: skip
        sys.exit(exc.exit_code)
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
        advice = "(set BREACH_DEBUG=1 to see the traceback, and please report it)"
        err.print(
            Text.assemble(("internal error:", "red"), f" {type(exc).__name__}: {exc} {advice}")
        )
        sys.exit(70)
