"""`breach demo` and `breach simulate` (being built)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run a shipped playbook live against the local provider simulator."""
    raise click.ClickException("`breach demo` is not available yet")


@click.command()
def simulate() -> None:
    """Serve the provider simulator on 127.0.0.1."""
    raise click.ClickException("`breach simulate` is not available yet")
