"""What a team checks before an incident: ``validate``, ``playbooks``, ``schema``, ``regimes``,
``plugins``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import shipped
from ..playbook import json_schema
from ..session import Breach
from .context import echo_json, err, json_option, pass_breach
from .tables import print_playbooks, print_plugins, print_regimes, regimes_markdown


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too (a regulator report item the "
              "playbook cannot give).")  # fmt: skip
@pass_breach(db=False)
def validate(breach: Breach, paths: tuple[Path, ...], strict: bool) -> None:
    """Check playbooks; print every problem as FILE:LINE:COLUMN: message. Warnings (a report
    item a regulator's report cannot state) fail only with --strict."""
    found = breach.validate(list(paths))
    for problem in found:
        click.echo(str(problem))
    problems = [p for p in found if p.severity != "warning" or strict]
    warned = len(found) - len(problems)
    if problems:
        files = len({p.file for p in problems})
        err.print(f"{len(problems)} problem(s) in {files} file(s)", style="red")
        sys.exit(1)
    note = f", {warned} warning(s)" if warned else ""
    err.print(f"{len(paths)} playbook(s) valid{note}", style="yellow" if warned else "green")


@click.command("playbooks")
@json_option
def list_playbooks(as_json: bool) -> None:
    """List the shipped playbooks (`breach trigger ID` and `breach demo --playbook ID` take
    their ids)."""
    rows = [p.as_dict() for p in shipped.playbooks()]
    if as_json:
        echo_json(rows)
    else:
        print_playbooks(rows)


@click.command()
def schema() -> None:
    """Print the playbook JSON Schema (for editors)."""
    echo_json(json_schema())


@click.command()
@json_option
@click.option("--markdown", is_flag=True, help="Print a Markdown table (as in the README).")
@pass_breach(db=False)
def regimes(breach: Breach, as_json: bool, markdown: bool) -> None:
    """List notification regimes and their deadlines (not legal advice)."""
    if markdown:
        click.echo(regimes_markdown(breach.regimes), nl=False)
    elif as_json:
        echo_json({k: v.model_dump(by_alias=True) for k, v in breach.regimes.items()})
    else:
        print_regimes(breach.regimes)


@click.command()
@json_option
@pass_breach(db=False)
def plugins(breach: Breach, as_json: bool) -> None:
    """List plugins: version, hooks, channels, audience sources, missing settings."""
    infos = breach.host.plugins()
    if as_json:
        echo_json([i.as_dict() for i in infos])
    else:
        print_plugins(infos)
