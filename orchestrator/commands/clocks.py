"""Statutory clocks: ``event`` (record what starts a clock) and ``deadline`` (when one is due)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..session import Breach
from .context import echo_json, err, json_option, pass_breach
from .tables import print_deadline


class InstantType(click.ParamType[datetime]):
    """An ISO 8601 time; without an offset it is read as UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2026-12-24T15:00:00-05:00")
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


INSTANT = InstantType()


@click.command()
@click.argument("incident")
@click.argument("event", metavar="EVENT")
@click.option("--at", "at", type=INSTANT, default=None,
              help="When it happened (ISO 8601; UTC without an offset; default: now).")  # fmt: skip
@click.option("--by", required=True, help="Who records it (kept in the audit trail).")
@json_option
@pass_breach()
def event(
    breach: Breach, incident: str, event: str, at: datetime | None, by: str, as_json: bool
) -> None:
    """Record that EVENT happened to INCIDENT, starting the clocks that count from it:
    discovered, determined, assessed, or filed:REGIME (a filing or notice made under REGIME)."""
    result = breach.record_event(incident, event, at=at, by=by)
    if as_json:
        echo_json(result)
    else:
        err.print(f"{incident}: {result['event']} at {result['at']}, recorded by {by}")


@click.command()
@click.argument("regime", metavar="REGIME")
@click.option("--from", "start", type=INSTANT, required=True,
              help="When the regime's clock starts (ISO 8601; UTC without an offset).")  # fmt: skip
@json_option
@pass_breach(db=False)
def deadline(breach: Breach, regime: str, start: datetime, as_json: bool) -> None:
    """Print when REGIME's deadline falls due for a clock started --from TIME (not legal
    advice)."""
    result = breach.deadline(regime, start)
    if as_json:
        echo_json(result)
    else:
        print_deadline(result)
