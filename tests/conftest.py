"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

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
