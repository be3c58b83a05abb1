"""`breach routes test`: which route would fire, its facts, the incident it would create or
join, and nothing created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    HERE,
    PAYLOADS,
    alert,
    alertmanager_payload,
    bearer,
    load,
    serving,
    write_config,
)

CONFIG = HERE / "breach.toml"


def breach(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prints_route_facts_and_new_incident_without_creating_anything(tmp_path: Path) -> None:
    result = breach(
        "routes",
        "test",
        str(PAYLOADS / "alertmanager-firing.json"),
        "--config",
        str(CONFIG),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "route:    ransomware (playbook ransomware-unknown-scope, audience customers)" in out
    assert "would create a new incident in mode dry-run" in out
    assert "  affected_count = 1200" in out
    assert '  systems_affected = ["file servers", "patient portal"]' in out
    assert "  exfiltration_confirmed = true" in out
    assert "dedupe:   alertmanager:" in out
    assert list(tmp_path.iterdir()) == []  # no ledger, no outbox


def test_shows_the_open_incident_it_would_join(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, ALERTMANAGER_ROUTE))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with serving(config, db) as server:
        created = httpx.post(
            f"{server.url}/hooks/alertmanager",
            headers=bearer(),
            content=json.dumps(alertmanager_payload()),
        )
    incident = created.json()["incident"]
    payload = tmp_path / "second.json"
    newer = alert("f-new", exfiltration="true")
    newer["annotations"]["affected_count"] = "7000"
    first = alertmanager_payload()["alerts"][0]
    payload.write_text(json.dumps(alertmanager_payload(alerts=[first, newer])))
    timeline_before = len(_timeline(incident, db))
    result = breach(
        "routes",
        "test",
        str(payload),
        "--config",
        str(tmp_path / "breach.toml"),
        "--db",
        db,
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["action"] == "join"
    assert summary["incident"] == incident
    assert summary["alerts"]["new"] == ["f-new"]
    assert summary["alerts"]["repeated"] == [first["fingerprint"]]
    assert summary["facts_changed"] == {
        "affected_count": 7000,
        "systems_affected": ["file servers"],
    }
    assert len(_timeline(incident, db)) == timeline_before  # nothing recorded


def _timeline(incident: str, db: str) -> list[dict[str, object]]:
    from orchestrator.session import Breach

    return Breach(db).timeline(incident)


def test_no_route_exits_1_and_says_why(tmp_path: Path) -> None:
    payload = tmp_path / "quiet.json"
    payload.write_text(json.dumps(alertmanager_payload(alerts=[alert("f1", severity="info")])))
    result = breach("routes", "test", str(payload), "--config", str(CONFIG), cwd=tmp_path)
    assert result.returncode == 1
    assert "no route matched" in result.stdout
    assert "ransomware: labels.severity is 'info', below 'high'" in result.stdout


def test_a_payload_of_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps(alertmanager_payload(version="3")))
    result = breach("routes", "test", str(payload), "--config", str(CONFIG), cwd=tmp_path)
    assert result.returncode == 2
    assert "not an Alertmanager notification: version: should be '4'" in result.stderr
    assert "Traceback" not in result.stderr
