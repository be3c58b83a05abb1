"""Evidence commands: ``audit verify`` (the hash chain of an incident's audit trail) and
``evidence`` (the bundle for regulators)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from ..session import Breach
from .context import echo_json, err, json_option, out, pass_breach


@click.group()
def audit() -> None:
    """Check an incident's audit trail."""


@audit.command()
@click.argument("incident")
@json_option
@pass_breach()
def verify(breach: Breach, incident: str, as_json: bool) -> None:
    """Walk INCIDENT's hash-chained audit trail and check the deliveries against the digests of
    its settle and receipt batches; exit 1 naming the first row (or batch) that breaks."""
    report = breach.verify_audit(incident)
    if as_json:
        echo_json(report.as_dict())
    elif report.intact:
        out.print(f"{incident}: audit chain intact, {report.rows:,} rows, head {report.head}; "
                  f"{report.batches:,} settle and receipt batches match their "
                  f"{report.deliveries:,} deliveries")  # fmt: skip
    elif report.deliveries_changed:
        out.print(Text.assemble(
            ("broken", "red"),
            f" {incident}: audit row {report.broken_row} ({report.broken_kind}): "
            f"{report.reason}; the chain itself holds ({report.rows:,} rows)",
        ))  # fmt: skip
    else:
        out.print(Text.assemble(
            ("broken", "red"),
            f" {incident}: audit row {report.broken_row} ({report.broken_kind}): "
            f"{report.reason}; {report.rows:,} rows before it verify",
        ))  # fmt: skip
    if not report.intact:
        sys.exit(1)


@click.command()
@click.argument("incident")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The zip file to write (e.g. bundle.zip).")  # fmt: skip
@json_option
@pass_breach()
def evidence(breach: Breach, incident: str, output: Path, as_json: bool) -> None:
    """Write INCIDENT's evidence bundle: timeline, chain head, status, notices per locale,
    regulator filings, the delivery ledger (contacts masked) and a manifest of file hashes."""
    manifest = breach.evidence(incident, output)
    if as_json:
        echo_json(manifest)
        return
    chain = manifest["chain"]
    err.print(f"{output}: {len(manifest['files']) + 1} files; audit chain "
              f"{'intact' if chain['intact'] else 'BROKEN'}, head {chain['head']}")  # fmt: skip
