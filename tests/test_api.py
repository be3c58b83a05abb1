"""The commander API: tokens and roles, trigger, approvals with quorum, rejection, cancel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Console, console
from engine_support import NOTIFIERS

from orchestrator.errors import Forbidden
from orchestrator.pluginhost import PluginHost
from orchestrator.session import Breach


def until(check: Any, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (a campaign runs in the server)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def trigger(c: Console, mode: str = "live", token: str = "commander") -> httpx.Response:
    body = {"playbook": "gated-sms", "audience": "staff", "mode": mode}
    return httpx.post(f"{c.url}/api/incidents", headers=c.auth(token), json=body, timeout=30)


def step(c: Console, incident: str, step_id: str) -> dict[str, Any]:
    data = httpx.get(f"{c.url}/api/incidents/{incident}", headers=c.auth("viewer")).json()
    return next(s for s in data["steps"] if s["step"] == step_id)


def act(c: Console, incident: str, step_id: str, verb: str, token: str,
        **body: Any) -> httpx.Response:  # fmt: skip
    return httpx.post(f"{c.url}/api/incidents/{incident}/steps/{step_id}/{verb}",
                      headers=c.auth(token), json=body or None, timeout=30)  # fmt: skip


def test_tokens_are_required_and_roles_checked(tmp_path: Path) -> None:
    with console(tmp_path, engine=False) as c:
        bare = httpx.get(f"{c.url}/api/incidents")
        wrong = httpx.get(f"{c.url}/api/incidents", headers={"Authorization": "Bearer nope"})
        viewer = httpx.get(f"{c.url}/api/incidents", headers=c.auth("viewer"))
        forged = trigger(c, "dry-run", token="viewer")
        me = httpx.get(f"{c.url}/api/whoami", headers=c.auth("chief")).json()
    for refused in (bare, wrong):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert viewer.status_code == 200 and viewer.json() == {"incidents": []}
    assert forged.status_code == 403 and "commander" in forged.json()["detail"]
    assert me == {"name": "chief", "roles": ["commander", "dpo", "legal"]}


def test_a_gate_of_two_roles_opens_on_its_quorum(tmp_path: Path) -> None:
    with console(tmp_path) as c:
        answer = trigger(c)
        assert answer.status_code == 201, answer.text
        incident = answer.json()["incident"]
        until(lambda: step(c, incident, "gated")["state"] == "awaiting_approval", "gate closed")
        assert step(c, incident, "gated")["waiting_for"]["missing"] == ["dpo", "legal"]
        assert act(c, incident, "gated", "approve", "viewer").status_code == 403
        assert act(c, incident, "gated", "approve", "commander").status_code == 403
        first = act(c, incident, "gated", "approve", "dpo")
        assert first.status_code == 200, first.text
        assert first.json()["open"] is False and first.json()["missing"] == ["legal"]
        assert act(c, incident, "gated", "approve", "dpo").status_code == 409
        assert "1 of 2 given (dpo (dpo))" in step(c, incident, "gated")["why"]
        second = act(c, incident, "gated", "approve", "legal")
        assert second.json()["open"] is True
        done = until(lambda: (s := step(c, incident, "gated"))["state"] == "done" and s,
                     "the gated step to run")  # fmt: skip
        assert done["deliveries"] == {"sent": 20}
        events = httpx.get(f"{c.url}/api/incidents/{incident}/timeline",
                           headers=c.auth("viewer")).json()["events"]  # fmt: skip
    refused = [e for e in events if e["kind"] == "step.approval_refused"]
    assert [e["actor"] for e in refused] == ["viewer", "commander"]
    approved = [(e["actor"], e["detail"]["role"], e["detail"]["via"])
                for e in events if e["kind"] == "step.approved"]  # fmt: skip
    assert approved == [("dpo", "dpo", "api"), ("legal", "legal", "api")]


def test_rejection_cancel_and_the_cli_rule(tmp_path: Path) -> None:
    with console(tmp_path) as c:
        incident = trigger(c).json()["incident"]
        until(lambda: step(c, incident, "console-only")["state"] == "awaiting_approval", "gate")
        assert act(c, incident, "later", "reject", "legal").status_code == 403
        rejected = act(c, incident, "later", "reject", "commander", reason="not needed")
        assert rejected.status_code == 200, rejected.text
        later = step(c, incident, "later")
        assert later["state"] == "cancelled"
        assert later["why"] == "rejected by commander: not needed"
        host = PluginHost(plugins_dir=NOTIFIERS)
        with Breach(c.db, host=host) as breach, pytest.raises(Forbidden, match="commander API"):
            breach.approve(incident, "console-only", by="alice", os_user="alice")
        cancelled = httpx.post(f"{c.url}/api/incidents/{incident}/cancel",
                               headers=c.auth("commander"), json={"reason": "drill"})  # fmt: skip
        assert cancelled.status_code == 200, cancelled.text
        again = httpx.post(f"{c.url}/api/incidents/{incident}/cancel", headers=c.auth("commander"))
        status = httpx.get(f"{c.url}/api/incidents/{incident}", headers=c.auth("viewer")).json()
    assert again.status_code == 409
    assert status["state"] == "cancelled"
    assert {s["step"]: s["state"] for s in status["steps"]}["console-only"] == "cancelled"


def test_unknown_things_are_named(tmp_path: Path) -> None:
    with console(tmp_path, engine=False) as c:
        missing = httpx.get(f"{c.url}/api/incidents/INC-20260101-000000", headers=c.auth("viewer"))
        playbook = httpx.post(f"{c.url}/api/incidents", headers=c.auth("commander"),
                              json={"playbook": "/etc/passwd", "audience": "staff"})  # fmt: skip
        audience = httpx.post(f"{c.url}/api/incidents", headers=c.auth("commander"),
                              json={"playbook": "gated-sms", "audience": "everyone"})  # fmt: skip
        dry = trigger(c, "dry-run")
    assert missing.status_code == 404
    assert playbook.status_code == 422 and "gated-sms" in playbook.json()["detail"]
    assert audience.status_code == 422 and "staff" in audience.json()["detail"]
    assert dry.status_code == 201, dry.text
    assert dry.json()["status"]["steps"][0]["deliveries"] == {"rendered": 20}


def test_the_cli_records_the_os_user_and_names_the_role(tmp_path: Path) -> None:
    import getpass
    import os
    import subprocess
    import sys

    from api_support import GATED
    from engine_support import phone_audience

    db = f"sqlite:///{tmp_path / 'l.db'}"
    host = PluginHost(plugins_dir=NOTIFIERS)
    with Breach(db, host=host) as breach:
        incident = breach.trigger(GATED, audience=str(phone_audience(tmp_path / "p.csv", 2)),
                                  mode="live").incident_id  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", "--plugins-dir",
                               str(NOTIFIERS), *args, "--db", db], capture_output=True,
                              text=True, check=False, env=os.environ.copy())  # fmt: skip

    unnamed = cli("approve", incident, "gated", "--by", "alice")
    named = cli("approve", incident, "gated", "--by", "alice", "--as", "dpo")
    console_only = cli("reject", incident, "console-only", "--by", "alice")
    assert unnamed.returncode == 2 and "--as dpo or --as legal" in unnamed.stderr
    assert named.returncode == 0, named.stderr
    assert "still waiting for legal" in named.stderr
    assert console_only.returncode == 2 and "commander API" in console_only.stderr
    with Breach(db, host=host) as breach:
        events = breach.timeline(incident)
    [approved] = [e for e in events if e["kind"] == "step.approved"]
    assert approved["actor"] == "alice"
    assert approved["detail"] == {"role": "dpo", "via": "cli", "os_user": getpass.getuser()}
    assert [e["step"] for e in events if e["kind"] == "step.approval_refused"] == ["console-only"]
