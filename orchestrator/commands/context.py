"""What every command shares: the group's options, the session decorator, common options.

A command that works on the ledger is decorated with :func:`pass_breach`: it receives an open
:class:`~orchestrator.session.Breach` as its first argument (built from ``--plugins-dir``,
``--regimes`` and its own ``--db``) and the session is closed when it returns.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..session import Breach

#: tables and reports (stdout); progress and messages (stderr). Markup is off: what is printed
#: holds user text (titles, facts, names) that must show as typed, brackets and all; styles come
#: from ``rich.text.Text`` parts instead.
out = Console(markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

db_option = click.option(
    "--db", envvar="BREACH_DATABASE_URL", default=None, metavar="URL",
    help="Ledger database URL (default: sqlite:///breach.db, or BREACH_DATABASE_URL).",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
log_json_option = click.option(
    "--log-json", is_flag=True, help="Log JSON lines (phone numbers, e-mails masked)."
)
log_libraries_option = click.option(
    "--log-libraries", envvar="BREACH_LOG_LIBRARIES", default="WARNING", show_default=True,
    metavar="LEVEL", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level of libraries (provider SDKs, HTTP clients); the project's own is INFO.",
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """The ``breach`` group's options, shared by every command."""

    plugins_dir: Path | None = None
    regimes: Path | None = None

    def open(self, db: str | None = None) -> Breach:
        """A session with these options over the ledger at ``db``."""
        return Breach(db, plugins_dir=self.plugins_dir, regimes_file=self.regimes)


def options_of(ctx: click.Context) -> Options:
    """The group's options (defaults when a command is invoked on its own)."""
    return ctx.find_object(Options) or Options()


def pass_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Hand the command the group's :class:`Options` as its first argument."""

    @click.pass_context
    def invoke(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        return command(options_of(ctx), *args, **kwargs)

    return functools.update_wrapper(invoke, command)


def pass_breach(*, db: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hand the command an open session as its first argument, and close it afterwards.

    With ``db`` (the default) the command takes ``--db``; without it the session's ledger is
    the default one, opened only if the command uses it.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @click.pass_context
        def invoke(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
            url = kwargs.pop("db", None)
            with options_of(ctx).open(url) as breach:
                return command(breach, *args, **kwargs)

        wrapped = functools.update_wrapper(invoke, command)
        return db_option(wrapped) if db else wrapped

    return decorate


def echo_json(data: Any) -> None:
    """Print data as indented JSON (non-ASCII kept; datetimes and paths as text)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
