"""The real Prometheus Alertmanager notifying the real `breach serve` on loopback.

One alert opens exactly one dry-run incident with its labels and annotations as facts; the
notifications Alertmanager repeats join it; the resolution lands on its timeline. Skipped when
the `prometheus-alertmanager` binary (Debian package of that name) is not installed.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fixtures.server.harness import ALERTMANAGER_ROUTE, HERE, write_config

from orchestrator.session import Breach

T = TypeVar("T")
BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
# the shared route, plus the report phase this test reads from a label
ROUTE = ALERTMANAGER_ROUTE + 'report_phase = "labels.phase"\n'
LABELS = {
    "alertname": "RansomwareDetected",
    "severity": "critical",
    "instance": "fs-01",
    "exfiltration": "true",
    "phase": "initial",
}
ANNOTATIONS = {
    "affected_count": "1,200",
    "systems": "file servers, patient portal",
    "summary": "Mass file encryption on fs-01",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(BINARY).exists(),
        reason="prometheus-alertmanager is not installed "
        "(apt-get install prometheus-alertmanager; .ci/run installs it)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, logs: list[Path]) -> T:
    """Poll ``probe`` until it returns something; fail with the processes' logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def reachable(url: str) -> bool | None:
    try:
        return httpx.get(url, timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None


class Process:
    """A child process with its output in a log file, stopped with SIGINT then SIGKILL."""

    def __init__(self, args: list[str], log: Path, cwd: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(args, stdout=self._file, stderr=subprocess.STDOUT, cwd=cwd)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._file.close()
        return self.popen.returncode


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`breach serve` and Alertmanager, wired together on loopback ports."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    serve_port, am_port = free_port(), free_port()
    config = write_config(tmp_path, ROUTE)
    serve = Process(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--config",
            str(config),
            "--port",
            str(serve_port),
            "--db",
            db,
            "--log-json",
        ],
        tmp_path / "serve.log",
        tmp_path,
    )
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(
        json.dumps(
            {  # JSON is YAML
                "route": {
                    "receiver": "breach",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "500ms",
                    "repeat_interval": "1s",
                },
                "receivers": [
                    {
                        "name": "breach",
                        "webhook_configs": [
                            {
                                "url": f"http://127.0.0.1:{serve_port}/hooks/alertmanager",
                                "send_resolved": True,
                                "http_config": {
                                    "authorization": {
                                        "type": "Bearer",
                                        "credentials_file": str(
                                            HERE / "secrets" / "alertmanager-token"
                                        ),
                                    }
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    logs = [tmp_path / "serve.log", tmp_path / "alertmanager.log"]
    am_url = f"http://127.0.0.1:{am_port}"
    alertmanager = None
    try:
        wait_for(
            "breach serve", lambda: reachable(f"http://127.0.0.1:{serve_port}/healthz"), 60, logs
        )
        alertmanager = Process(
            [
                BINARY,
                f"--config.file={am_config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            tmp_path / "alertmanager.log",
            tmp_path,
        )
        wait_for("Alertmanager", lambda: reachable(f"{am_url}/-/ready"), 30, logs)
        yield {"db": db, "alertmanager": am_url, "logs": logs}
    finally:
        if alertmanager is not None:
            alertmanager.stop()
        assert serve.stop() == 0, (tmp_path / "serve.log").read_text()


def post_alert(url: str, **times: str) -> None:
    alert = {
        "labels": LABELS,
        "annotations": ANNOTATIONS,
        "generatorURL": "http://prometheus.example:9090/graph",
        **times,
    }
    response = httpx.post(f"{url}/api/v2/alerts", json=[alert], timeout=5)
    assert response.status_code == 200, response.text


def alert_kinds(incident: str, db: str) -> list[str]:
    return [e["kind"] for e in Breach(db).timeline(incident) if e["kind"].startswith("alert.")]


def test_alertmanager_opens_one_dry_run_incident_joins_repeats_records_resolution(
    stack: dict[str, Any],
) -> None:
    db, logs = stack["db"], stack["logs"]
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    post_alert(stack["alertmanager"], startsAt=started.isoformat())

    def the_incident() -> str | None:
        found = Breach(db).incidents()  # `breach serve` created the ledger at start
        return str(found[0]["id"]) if found else None

    incident = wait_for("the incident", the_incident, 30, logs)
    # the incident is recorded before its dry-run renders; wait for the outbox to be complete
    wait_for("the dry-run to finish",
             lambda: Breach(db).status(incident)["state"] == "finished", 60, logs)  # fmt: skip
    status = Breach(db).status(incident)
    assert status["mode"] == "dry-run"
    assert status["playbook"] == "ransomware-unknown-scope"
    assert status["facts"]["affected_count"] == 1200
    assert status["facts"]["exfiltration_confirmed"] is True
    assert status["facts"]["systems_affected"] == ["file servers", "patient portal"]
    assert status["facts"]["report_phase"] == "initial"
    assert datetime.fromisoformat(Breach(db).incidents()[0]["aware_at"]) == started
    assert Path(status["outbox"], "summary.json").exists()

    # Alertmanager repeats the notification every repeat_interval: it joins the incident
    wait_for(
        "a repeated notification", lambda: "alert.repeated" in alert_kinds(incident, db), 30, logs
    )

    # the alert ends: Alertmanager sends the resolution, recorded on the same timeline
    post_alert(
        stack["alertmanager"],
        startsAt=started.isoformat(),
        endsAt=(datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
    )
    wait_for("the resolution", lambda: "alert.resolved" in alert_kinds(incident, db), 30, logs)

    assert [i["id"] for i in Breach(db).incidents()] == [incident]
    kinds = alert_kinds(incident, db)
    assert kinds[0] == "alert.received"
    assert set(kinds) <= {"alert.received", "alert.repeated", "alert.resolved"}
    assert Breach(db).status(incident)["state"] != "cancelled"
