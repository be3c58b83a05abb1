"""Regulator reports: ``report --check`` (does the incident give every item the regime asks
for?)."""

from __future__ import annotations

import sys

import click

from ..session import Breach
from .context import echo_json, err, json_option, pass_breach
from .tables import print_report_check


@click.command()
@click.argument("incident")
@click.option("--regulator", "regulator", required=True, metavar="ID",
              help="The playbook's regulator whose report to check.")  # fmt: skip
@click.option("--check", is_flag=True, help="Check the report's required items (exit 1 when "
              "one is missing).")  # fmt: skip
@json_option
@pass_breach()
def report(breach: Breach, incident: str, regulator: str, check: bool, as_json: bool) -> None:
    """Check that INCIDENT gives every item a report to --regulator ID must state; missing
    items are named, never filed blank."""
    if not check:
        raise click.UsageError(
            "add --check: reports are filed by the playbook's regulator step; this command "
            "checks what they must state"
        )
    result = breach.report_check(incident, regulator)
    if as_json:
        echo_json(result)
    else:
        print_report_check(result)
        if result["missing"]:
            err.print(f"missing: {', '.join(result['missing'])}", style="red")
    if result["missing"]:
        sys.exit(1)
