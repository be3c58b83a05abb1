"""Incident commands: ``trigger``, ``status``, ``approve``, ``cancel``, ``update``, ``timeline``."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click

from .. import facts as facts_mod
from ..notifier import Mode
from ..session import Breach
from .context import echo_json, err, json_option, pass_breach
from .tables import (
    print_incidents,
    print_status,
    print_summary,
    print_timeline,
    print_update,
    print_workers,
)


@click.command()
@click.argument("playbook", metavar="PLAYBOOK")
@click.option(
    "--audience", "-a", required=True, metavar="SOURCE",
    help="people.csv, data.jsonl, csv:PATH, jsonl:PATH or sql:URL (with --query).",
)  # fmt: skip
@click.option("--query", default=None, help="SQL query for an sql: audience (bound parameters).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="A bound parameter of --query."
)
@click.option(
    "--fact", "-f", "fact_pairs", multiple=True, metavar="NAME=VALUE",
    help="An incident fact (repeatable).",
)  # fmt: skip
@click.option(
    "--aware-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]),
    default=None,
    help="When the organisation became aware (UTC).",
)
@click.option(
    "--dry-run", "mode", flag_value="dry-run",
    help="Render everything into --outbox at once; send nothing.",
)  # fmt: skip
@click.option(
    "--sandbox", "mode", flag_value="sandbox",
    help="Schedule for delivery through the providers' validate-only modes.",
)  # fmt: skip
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
@json_option
@pass_breach()
def trigger(
    breach: Breach, playbook: str, audience: str, query: str | None, params: tuple[str, ...],
    fact_pairs: tuple[str, ...], aware_at: datetime | None, mode: str | None,
    redirect_to: Path | None, outbox: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Declare an incident from PLAYBOOK (a file, or a shipped playbook's id) and notify its
    audience."""
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
    result = breach.trigger(
        playbook, audience=audience, audience_options=options, facts=given, aware_at=aware_at,
        mode=cast(Mode, mode), outbox=outbox, redirect_to=redirect_to,
    )  # fmt: skip
    if as_json:
        echo_json(result.summary)
    elif mode == "dry-run":
        print_summary(result.summary)
    else:
        print_status(result.summary)
        err.print(
            f"{result.incident_id} scheduled ({mode}); `breach run` delivers it as steps fall due"
        )


@click.command()
@click.argument("incident", required=False)
@json_option
@pass_breach()
def status(breach: Breach, incident: str | None, as_json: bool) -> None:
    """Show one incident (steps, deliveries by state) or list recent incidents."""
    if incident is None:
        incidents = breach.incidents()
        if as_json:
            echo_json({"incidents": incidents})
        else:
            print_incidents(incidents)
            print_workers(breach.workers())
        return
    data = breach.status(incident)
    if as_json:
        echo_json(data)
    else:
        print_status(data)


@click.command()
@click.argument("incident")
@click.argument("step")
@click.option("--by", required=True, help="Who approves (recorded with the OS user).")
@click.option(
    "--as", "as_role", default=None, metavar="ROLE",
    help="The role you approve in, when the step asks several (dpo, legal...).",
)  # fmt: skip
@json_option
@pass_breach()
def approve(
    breach: Breach, incident: str, step: str, by: str, as_role: str | None, as_json: bool
) -> None:
    """Approve STEP in your role; it fires when due once its quorum of roles approved."""
    result = breach.approve(incident, step, by=by, as_role=as_role, os_user=os_user())
    if as_json:
        echo_json(result)
    elif result["open"]:
        err.print(f"{incident} {step}: approved by {by}; the gate is open")
    else:
        err.print(f"{incident} {step}: approved by {by} as {result['role']}; still waiting for "
                  + " and ".join(result["missing"]))  # fmt: skip


@click.command()
@click.argument("incident")
@click.argument("step")
@click.option("--by", required=True, help="Who rejects (recorded with the OS user).")
@click.option("--as", "as_role", default=None, metavar="ROLE", help="The role you reject in.")
@click.option("--reason", default=None)
@json_option
@pass_breach()
def reject(
    breach: Breach, incident: str, step: str, by: str, as_role: str | None, reason: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Reject STEP before it fires: it is cancelled and never sends."""
    result = breach.reject(incident, step, by=by, reason=reason, as_role=as_role,
                           os_user=os_user())  # fmt: skip
    if as_json:
        echo_json(result)
    else:
        err.print(f"{incident} {step}: rejected by {by}; it will not fire")


def os_user() -> str:
    """The operating-system user running the command, recorded beside ``--by``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (a bare container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


@click.command()
@click.argument("incident")
@click.option("--by", required=True, help="Who cancels (recorded in the audit trail).")
@click.option("--reason", default=None)
@json_option
@pass_breach()
def cancel(breach: Breach, incident: str, by: str, reason: str | None, as_json: bool) -> None:
    """Stop INCIDENT: unfired steps cancelled, pending deliveries skipped."""
    result = breach.cancel(incident, by=by, reason=reason)
    if as_json:
        echo_json(result)
    else:
        err.print(f"{incident} cancelled; {result['skipped']:,} pending deliveries skipped")


@click.command()
@click.argument("incident")
@click.option(
    "--fact", "-f", "fact_pairs", multiple=True, metavar="NAME=VALUE",
    help="A corrected or new value of a declared fact (repeatable).",
)  # fmt: skip
@click.option("--reason", default=None, help="Why the facts changed (the follow-up may say it).")
@click.option("--by", default=None, help="Who records the update (default: the OS user).")
@json_option
@pass_breach()
def update(
    breach: Breach, incident: str, fact_pairs: tuple[str, ...], reason: str | None,
    by: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Correct or complete INCIDENT's facts; on_update steps send a follow-up notice to the
    people who received an earlier one."""
    given = facts_mod.parse_assignments(list(fact_pairs))
    result = breach.update(incident, given, reason=reason, by=by or os_user())
    if as_json:
        echo_json(result)
        return
    print_update(result)


@click.command()
@click.argument("incident")
@json_option
@pass_breach()
def timeline(breach: Breach, incident: str, as_json: bool) -> None:
    """Print INCIDENT's audit trail, oldest first: who did what, when."""
    events = breach.timeline(incident)
    if as_json:
        echo_json(events)
    else:
        print_timeline(events)
