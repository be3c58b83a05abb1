"""A live route end to end: a signed webhook starts an incident the server's engine delivers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from engine_support import PLAYBOOK, phone_audience, standin_host
from fixtures.server.harness import SECRET, LiveServer, incidents, load, signed_headers

from orchestrator.engine import Engine
from orchestrator.session import Breach
from orchestrator.simulator import Simulator


def test_live_webhook_is_delivered_by_the_servers_engine(
    simulator: Simulator, tmp_path: Path
) -> None:
    host = standin_host(simulator.url)
    people = phone_audience(tmp_path / "people.csv", 300)
    (tmp_path / "generic-secret").write_text(SECRET)
    config_path = tmp_path / "breach.toml"
    config_path.write_text(f"""
[auth.generic]
secret_file = "generic-secret"

[audiences.staff]
source = "{people.name}"

[[routes]]
name = "dlp"
hook = "generic"
playbook = "{PLAYBOOK}"
audience = "staff"
mode = "live"
dedupe = "ref"
[routes.match]
source = "dlp"
""")
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with LiveServer(
        load(config_path, host),
        db=db,
        host=host,
        engine=lambda breach: Engine(breach, rescan_seconds=0.2),
    ) as server:
        body = json.dumps({"source": "dlp", "ref": "DLP-77"}).encode()
        answer = httpx.post(f"{server.url}/hooks/generic", content=body,
                            headers=signed_headers(body), timeout=10)  # fmt: skip
        assert answer.status_code == 201, answer.text
        (incident,) = incidents(db)
        assert incident["mode"] == "live"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = Breach(db).status(incident["id"])
            if status["steps"][0]["deliveries"].get("sent") == 300:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not delivered in time: {status['steps']}")
    assert len({m.delivery_id for m in simulator.accepted("standin")}) == 300
