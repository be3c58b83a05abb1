"""The playbooks shipped with the package, found by id from any folder.

They live in the repository's ``playbooks/`` folder and are installed as package data (the
package's ``playbooks`` entry links to that folder), so ``breach trigger credential-leak`` and
``breach demo`` work after ``pip install .`` wherever they are run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import BreachError


@dataclass(frozen=True)
class ShippedPlaybook:
    """One shipped playbook, as ``breach playbooks`` lists it."""

    id: str
    title: str
    version: str
    path: Path

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "version": self.version,
                "path": str(self.path)}  # fmt: skip


def folder() -> Path:
    """Where the shipped playbooks are installed."""
    return Path(str(resources.files("orchestrator").joinpath("playbooks")))


def example_audience() -> Path:
    """The example affected-people file the quick start uses."""
    return folder() / "examples" / "affected-people.csv"


def playbooks() -> list[ShippedPlaybook]:
    """Every shipped playbook, by id. Only the header is read; ``breach validate`` checks them."""
    out = []
    for path in sorted(folder().glob("*.yaml")):
        head = yaml.safe_load(path.read_text("utf-8")) or {}
        out.append(ShippedPlaybook(id=str(head.get("id", path.stem)),
                                   title=str(head.get("title", "")),
                                   version=str(head.get("version", "")), path=path))  # fmt: skip
    return out


def locate(ref: str | Path) -> Path:
    """A playbook file: ``ref`` as a path when such a file exists, else a shipped playbook's id.

    A path that does not exist and names no shipped playbook raises :class:`BreachError` that
    lists the shipped ids.
    """
    path = Path(ref)
    if path.is_file():
        return path
    known = {p.id: p.path for p in playbooks()}
    if str(ref) in known:
        return known[str(ref)]
    looks_like_path = path.suffix in (".yaml", ".yml") or len(path.parts) > 1
    hint = difflib.get_close_matches(str(ref), list(known), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    what = f"no playbook file {ref}" if looks_like_path else f"no playbook {str(ref)!r}"
    raise BreachError(
        f"{what}: give a playbook file or the id of a shipped playbook "
        f"({', '.join(sorted(known))}){suggestion}"
    )
