"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.simulator import Simulator


@pytest.fixture(scope="session")
def _simulator_server() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def simulator(_simulator_server: Simulator) -> Iterator[Simulator]:
    """The provider simulator on 127.0.0.1, started once per session, fresh for every test."""
    _simulator_server.reset()
    yield _simulator_server
    _simulator_server.reset()  # cancels receipts still pending so they cannot leak into the next


def _ledgers() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get("BREACH_TEST_POSTGRES_URL") else ["sqlite"]


@pytest.fixture(params=_ledgers())
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger: a SQLite file, and PostgreSQL too when BREACH_TEST_POSTGRES_URL
    points at a server (its public schema is dropped and made anew for every test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    from sqlalchemy import create_engine, text

    url = os.environ["BREACH_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url
