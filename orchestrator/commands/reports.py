"""Regulator reports: ``breach report`` renders the report a regulator step would file now, and
``--check`` says whether it states every item its regime asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..session import Breach
from .context import echo_json, err, json_option, pass_breach
from .tables import print_report_check


@click.command()
@click.argument("incident")
@click.option("--regulator", "regulator", required=True, metavar="ID",
              help="The playbook's regulator whose report to build.")  # fmt: skip
@click.option("--step", "step", metavar="STEP",
              help="The regulator step whose filing to build (default: its first).")  # fmt: skip
@click.option("--check", is_flag=True, help="Check the report's required items and its JSON "
              "Schema (exit 1 when an item is missing).")  # fmt: skip
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the printable HTML report to FILE.")  # fmt: skip
@json_option
@pass_breach()
def report(
    breach: Breach,
    incident: str,
    regulator: str,
    step: str | None,
    check: bool,
    html: Path | None,
    as_json: bool,
) -> None:
    """Build the report INCIDENT's step would file to --regulator ID now, in that regulator's
    regime (its items, in the regulator's voice) and print its JSON; with --check, list each
    item, where it comes from and what the incident gives. Missing items are named, never
    filed blank."""
    result = breach.report(incident, regulator, step)
    if html is not None:
        page = breach.render_report_html(incident, regulator, step)
        html.write_text(page, encoding="utf-8")
    if check:
        if as_json:
            echo_json(result)
        else:
            print_report_check(result)
            if result["missing"]:
                err.print(f"missing: {', '.join(result['missing'])}", style="red")
            for problem in result["schema_errors"]:
                err.print(f"schema: {problem}", style="red")
        if not result["complete"]:
            sys.exit(1)
        return
    echo_json(result if as_json else result["report"])
    for warning in result["warnings"]:
        err.print(f"before filing: {warning}", style="yellow")
