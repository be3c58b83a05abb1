"""Grafana alerting's webhook: HMAC-signed, routed and deduplicated like Alertmanager alerts."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    PAYLOADS,
    incidents,
    kinds,
    load,
    serving,
    write_config,
)

from orchestrator.server.auth import grafana_signature

SECRET = "grafana-contact-point-secret-0123456789"
FIXTURE = json.loads((PAYLOADS / "grafana-firing.json").read_text("utf-8"))


def config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "grafana-secret").write_text(SECRET)
    route = ALERTMANAGER_ROUTE.replace('hook = "alertmanager"', 'hook = "grafana"')
    auth = f'\n[auth.grafana]\nsecret_file = "{tmp_path / "grafana-secret"}"\n{extra}\n'
    path = write_config(tmp_path, route)
    path.write_text(path.read_text("utf-8").replace("[audiences.", auth + "[audiences.", 1))
    return path


def post(url: str, document: dict[str, Any], *, secret: str = SECRET,
         timestamp: int | None = None, header: str = "X-Grafana-Alerting-Signature",
         ) -> httpx.Response:  # fmt: skip
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json",
               header: grafana_signature(secret.encode(), body, timestamp)}  # fmt: skip
    if timestamp is not None:
        headers["X-Grafana-Alerting-Timestamp"] = str(timestamp)
    return httpx.post(f"{url}/hooks/grafana", content=body, headers=headers, timeout=30)


def test_a_signed_grafana_alert_creates_one_incident_and_repeats_join(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with serving(load(config(tmp_path)), db) as server:
        first = post(server.url, FIXTURE)
        assert first.status_code == 201, first.text
        assert first.json()["route"] == "ransomware" and first.json()["hook"] == "grafana"
        repeat = post(server.url, FIXTURE)
        another = copy.deepcopy(FIXTURE)
        alert = another["alerts"][0]
        alert["fingerprint"], alert["labels"]["instance"] = "0d1e2f3a4b5c6d7e", "fs-02"
        joined = post(server.url, another)
    assert repeat.status_code == 200 and repeat.json()["status"] == "joined"
    assert joined.json()["alerts"]["new"] == ["0d1e2f3a4b5c6d7e"]
    [incident] = incidents(db)
    assert incident["playbook"] == "ransomware-unknown-scope"
    events = kinds(incident["id"], db)
    assert events.count("alert.received") == 1 and "alert.repeated" in events
    assert "alert.joined" in events


@pytest.mark.parametrize("how", ["wrong secret", "unsigned", "tampered"])
def test_a_wrong_signature_is_refused_and_creates_nothing(tmp_path: Path, how: str) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with serving(load(config(tmp_path)), db) as server:
        if how == "wrong secret":
            answer = post(server.url, FIXTURE, secret="not-the-secret")
        elif how == "unsigned":
            answer = post(server.url, FIXTURE, header="X-Something-Else")
        else:
            body = json.dumps(FIXTURE).encode()
            signature = grafana_signature(SECRET.encode(), body)
            answer = httpx.post(f"{server.url}/hooks/grafana", content=body.replace(b"1200", b"9"),
                                headers={"Content-Type": "application/json",
                                         "X-Grafana-Alerting-Signature": signature})  # fmt: skip
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert incidents(db) == []


def test_the_timestamp_header_is_signed_and_checked(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    path = config(tmp_path, 'timestamp_header = "X-Grafana-Alerting-Timestamp"')
    with serving(load(path), db) as server:
        stale = post(server.url, FIXTURE, timestamp=int(time.time()) - 3600)
        bare = post(server.url, FIXTURE)  # signed over the body alone: not what is configured
        fresh = post(server.url, FIXTURE, timestamp=int(time.time()))
    assert stale.status_code == 401 and "away from this server's clock" in stale.json()["detail"]
    assert bare.status_code == 401
    assert fresh.status_code == 201, fresh.text
    assert len(incidents(db)) == 1


def test_an_alertmanager_payload_is_not_a_grafana_one(tmp_path: Path) -> None:
    document = json.loads((PAYLOADS / "alertmanager-firing.json").read_text("utf-8"))
    with serving(load(config(tmp_path)), f"sqlite:///{tmp_path / 'l.db'}") as server:
        answer = post(server.url, document)
    assert answer.status_code == 400
    assert "version" in answer.json()["detail"]


def test_routes_test_recognises_a_grafana_payload(tmp_path: Path) -> None:
    import subprocess
    import sys

    payload = str(PAYLOADS / "grafana-firing.json")
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "routes", "test", payload,
         "--config", str(config(tmp_path)), "--json"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["hook"], summary["action"], summary["route"]) == ("grafana", "create",
                                                                      "ransomware")  # fmt: skip
    assert summary["dedupe_key"].startswith("grafana:")
