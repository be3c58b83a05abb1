"""Pre-flight and configuration errors: settings are checked for the mode before anything is
written, and a configuration error while sending stops its step instead of being retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from engine_support import PLAYBOOK, deliveries, phone_audience

from orchestrator.errors import ConfigurationError
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

LIVE = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "live-token",
        "TWILIO_FROM": "+15557650000"}  # fmt: skip
TEST = {"TWILIO_TEST_ACCOUNT_SID": "AC" + "2" * 32, "TWILIO_TEST_AUTH_TOKEN": "test-token"}


def twilio_playbook(tmp_path: Path) -> Path:
    path = tmp_path / "twilio.yaml"
    path.write_text(PLAYBOOK.read_text().replace("standin-sms", "twilio-sms"), "utf-8")
    return path


def env_without_twilio(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    return {**env, "COLUMNS": "200", **extra}


def breach(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, check=False, env=env, timeout=300)  # fmt: skip


def test_sandbox_trigger_names_the_test_credentials_and_writes_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    people = phone_audience(tmp_path / "p.csv", 3)
    run = breach("trigger", str(twilio_playbook(tmp_path)), "--sandbox", "-a", str(people),
                 "--db", db, env=env_without_twilio(**LIVE))  # fmt: skip
    assert run.returncode == ConfigurationError.exit_code, run.stdout + run.stderr
    assert "TWILIO_TEST_ACCOUNT_SID" in run.stderr and "TWILIO_TEST_AUTH_TOKEN" in run.stderr
    assert "sandbox mode" in run.stderr and "Traceback" not in run.stderr
    listed = breach("status", "--db", db, "--json", env=env_without_twilio())
    assert json.loads(listed.stdout) == {"incidents": []}


def test_each_mode_checks_its_own_settings(tmp_path: Path) -> None:
    playbook = twilio_playbook(tmp_path)
    people = str(phone_audience(tmp_path / "p.csv", 2))
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with Breach(db, settings=TEST) as session:  # test credentials only: sandbox is fine
        assert session.trigger(playbook, audience=people, mode="sandbox").incident_id
        with pytest.raises(ConfigurationError) as live:
            session.trigger(playbook, audience=people, mode="live")
        assert "TWILIO_ACCOUNT_SID" in str(live.value) and "TWILIO_TEST" not in str(live.value)
        assert len(session.incidents()) == 1
    with Breach(db, settings=LIVE) as session:
        assert session.trigger(playbook, audience=people, mode="live").incident_id


def test_a_configuration_error_while_sending_blocks_the_step(
    simulator: Simulator, tmp_path: Path
) -> None:
    """Triggered where the test credentials were set, run where they are not: the sends fail
    once each with the setting named, the step is blocked, and ``run --until-idle`` ends."""
    db = f"sqlite:///{tmp_path / 'l.db'}"
    people = str(phone_audience(tmp_path / "p.csv", 30))
    settings = {**LIVE, **TEST, "TWILIO_API_BASE_URL": simulator.url}
    with Breach(db, settings=settings) as session:
        incident = session.trigger(twilio_playbook(tmp_path), audience=people,
                                   mode="sandbox").incident_id  # fmt: skip
    env = env_without_twilio(**LIVE, TWILIO_API_BASE_URL=simulator.url)
    run = breach("run", "--until-idle", "--db", db, env=env)
    assert run.returncode == ConfigurationError.exit_code, run.stderr
    assert f"blocked {incident}/sms-all" in run.stderr
    assert "TWILIO_TEST_ACCOUNT_SID" in run.stderr and "Traceback" not in run.stderr
    rows = deliveries(db, incident)
    assert len(rows) == 30
    assert {(d.state, d.attempts) for d in rows} == {("failed", 1)}
    assert all("TWILIO_TEST_AUTH_TOKEN" in (d.reason or "") for d in rows)
    assert simulator.requests("twilio") == []
    with Breach(db) as session:
        status = session.status(incident)
        timeline = session.timeline(incident)
    [step] = status["steps"]
    assert step["state"] == "blocked"
    assert "TWILIO_TEST_ACCOUNT_SID" in step["why"]
    assert [e["kind"] for e in timeline].count("step.blocked") == 1
    assert not any(e["kind"] == "circuit.opened" for e in timeline)


def test_a_live_route_refuses_when_its_notifiers_lack_settings(tmp_path: Path) -> None:
    from fixtures.server.harness import SECRET, LiveServer, incidents, load, signed_headers

    from orchestrator.engine import Engine
    from orchestrator.pluginhost import PluginHost

    people = phone_audience(tmp_path / "people.csv", 3)
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
playbook = "{twilio_playbook(tmp_path)}"
audience = "staff"
mode = "live"
[routes.match]
source = "dlp"
""")
    host = PluginHost(settings={"TWILIO_FROM": "+15557650000"})
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with LiveServer(
        load(config_path, host), db=db, host=host, engine=lambda b: Engine(b)
    ) as server:
        body = json.dumps({"source": "dlp"}).encode()
        answer = httpx.post(f"{server.url}/hooks/generic", content=body,
                            headers=signed_headers(body), timeout=10)  # fmt: skip
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:breach:problem:notifier-not-configured"
    assert "TWILIO_ACCOUNT_SID" in problem["detail"] and "TWILIO_AUTH_TOKEN" in problem["detail"]
    assert incidents(db) == []
