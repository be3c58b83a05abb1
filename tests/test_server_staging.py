"""Modes: a staging server (force_mode = "dry-run") cannot send live, whatever its routes say
and even with a delivery engine running; a live route without an engine answers 503."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    GENERIC_ROUTE,
    PAYLOADS,
    alertmanager_payload,
    bearer,
    incidents,
    load,
    serving,
    signed_headers,
    write_config,
)

from orchestrator.session import Breach


class FakeEngine:
    """Stands in for the delivery engine: records that the server started and stopped it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def modes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The mode of every trigger the server makes."""
    seen: list[str] = []
    real = Breach.trigger

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["mode"])
        return real(*args, **kwargs)

    monkeypatch.setattr(Breach, "trigger", spy)
    return seen


def staging(tmp_path: Path) -> Path:
    path = write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE, mode="live")
    path.write_text(path.read_text().replace("[server]\n", '[server]\nforce_mode = "dry-run"\n'))
    return path


def post_both(url: str) -> list[httpx.Response]:
    body = (PAYLOADS / "generic-dlp.json").read_bytes()
    return [
        httpx.post(
            f"{url}/hooks/alertmanager",
            content=json.dumps(alertmanager_payload()),
            headers=bearer(),
        ),
        httpx.post(f"{url}/hooks/generic", content=body, headers=signed_headers(body)),
    ]


def test_staging_server_runs_live_routes_as_dry_runs(tmp_path: Path, modes: list[str]) -> None:
    config = load(staging(tmp_path))
    assert config.notes  # the operator is told at start-up
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = FakeEngine()
    with serving(config, db, engine=engine) as server:
        responses = post_both(server.url)
        health = httpx.get(f"{server.url}/healthz").json()
    assert [r.status_code for r in responses] == [201, 201]
    assert [r.json()["mode"] for r in responses] == ["dry-run", "dry-run"]
    assert modes == ["dry-run", "dry-run"]
    assert [i["mode"] for i in incidents(db)] == ["dry-run", "dry-run"]
    for incident in incidents(db):
        assert Path(Breach(db).status(incident["id"])["outbox"]).is_relative_to(tmp_path)
    assert health["force_mode"] == "dry-run"
    assert engine.calls == ["start", "stop"]


def test_live_route_without_engine_is_503_and_creates_nothing(
    tmp_path: Path, modes: list[str]
) -> None:
    config = load(write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE, mode="live"))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with serving(config, db) as server:
        responses = post_both(server.url)
        health = httpx.get(f"{server.url}/healthz").json()
    for response in responses:
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "60"
        assert "live delivery engine is not running" in response.json()["detail"]
    assert modes == []
    assert incidents(db) == []
    assert health["live_delivery"] is False


def test_routes_test_shows_the_forced_mode(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.commands import cli

    result = CliRunner().invoke(
        cli,
        [
            "routes",
            "test",
            str(PAYLOADS / "generic-dlp.json"),
            "--config",
            str(staging(tmp_path)),
            "--json",
            "--db",
            f"sqlite:///{tmp_path / 'ledger.db'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mode"] == "dry-run"
