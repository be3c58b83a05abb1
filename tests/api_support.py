"""The commander API under test: a real server on 127.0.0.1 with tokens of every role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine_support import NOTIFIERS, phone_audience
from fixtures.server.harness import LiveServer

from orchestrator.engine import Engine
from orchestrator.pluginhost import PluginHost
from orchestrator.server.config import load_config
from orchestrator.server.tokens import new_token

GATED = Path(__file__).parent / "fixtures" / "api" / "gated.yaml"
ROLES = {"viewer": ["viewer"], "commander": ["commander"], "dpo": ["dpo"], "legal": ["legal"],
         "chief": ["commander", "dpo", "legal"]}  # fmt: skip


@dataclass
class Console:
    """A running server, its ledger and a bearer header per token name."""

    server: LiveServer
    db: str
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@contextmanager
def console(tmp_path: Path, *, people: int = 20, engine: bool = True) -> Iterator[Console]:
    """``breach serve`` with API tokens (viewer, commander, dpo, legal, chief), the gated
    playbook as a dry-run route's, a ``staff`` audience, and (by default) the live engine."""
    audience = phone_audience(tmp_path / "staff.csv", people)
    entries, values = [], {}
    for name, roles in ROLES.items():
        values[name], entry = new_token(name, roles)
        entries.append(entry)
    (tmp_path / "generic-secret").write_text("s" * 40)
    path = tmp_path / "breach.toml"
    path.write_text(f"""
[auth.generic]
secret_file = "generic-secret"

[audiences.staff]
source = "{audience.name}"

[[routes]]
name = "gated"
hook = "generic"
playbook = "{GATED}"
audience = "staff"
mode = "dry-run"
[routes.match]
source = "test"

""" + "\n\n".join(entries) + "\n", "utf-8")  # fmt: skip
    host = PluginHost(plugins_dir=NOTIFIERS)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = load_config(path, host=host)
    build = (lambda b: Engine(b, rescan_seconds=0.2)) if engine else None
    with LiveServer(config, db=db, host=host, engine=build) as server:
        yield Console(server, db, values)
