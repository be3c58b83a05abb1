"""The README's command table documents every command the ``breach`` CLI has.

(The statutory-clocks table is kept equal to the regimes data by
``tests/test_clocks.py::test_the_readme_clocks_table_is_generated_from_the_data``.)
"""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.commands import cli

README = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
TABLE = README.split("## Commands", 1)[1].split("\n## ", 1)[0]


def command_paths(group: click.Group, prefix: str = "breach") -> list[str]:
    """``breach NAME`` for every command, ``breach GROUP SUB`` inside groups."""
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += command_paths(command, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_command_is_in_the_readme_command_table() -> None:
    paths = command_paths(cli)
    assert {"breach event", "breach deadline", "breach timeline", "breach audit verify",
            "breach evidence"} <= set(paths)  # fmt: skip
    missing = [p for p in paths if f"`{p}" not in TABLE]
    assert missing == [], f"commands missing from the README's Commands table: {missing}"
