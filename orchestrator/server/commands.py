"""CLI commands of the server (``breach serve``, ``breach routes test``)."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Run the webhook server (not available yet)."""
    raise click.ClickException("`breach serve` is not available in this version yet")


@click.group()
def routes() -> None:
    """Inspect webhook routing rules."""
