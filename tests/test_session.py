"""One ``Breach`` session per command and per server process.

Database engines are counted by SQLAlchemy itself: every engine that opens a connection fires
``engine_connect``, and the test keeps each such engine (so none is collected and its identity
reused while counting).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import run
from engine_support import NOTIFIERS, PLAYBOOK, phone_audience
from factories import notice_yaml
from fixtures.server.harness import GENERIC_ROUTE, load, serving, signed_headers, write_config
from sqlalchemy import Engine, event

from orchestrator.session import Breach
from orchestrator.simulator import Simulator

REGULATED = (
    """\
id: regulated-sms
title: Regulated SMS campaign
version: 1
severity: high
organisation:
  name: Example Org
  contact_email: privacy@example.org
"""
    + notice_yaml("en")
    + """\
regulators:
  - id: dpc
    name: Data Protection Commission
    regime: gdpr-art33
steps:
  - id: sms-all
    channel: sms
    notifier: standin-sms
    at: +0m
"""
)


class Engines:
    """The distinct database engines that opened a connection while it listened."""

    def __init__(self) -> None:
        self.seen: dict[int, Engine] = {}

    def connected(self, **event: Any) -> None:
        engine = event["conn"].engine
        self.seen.setdefault(id(engine), engine)

    def __len__(self) -> int:
        return len(self.seen)


@pytest.fixture
def engines() -> Iterator[Engines]:
    counter = Engines()
    event.listen(Engine, "engine_connect", counter.connected, named=True)
    try:
        yield counter
    finally:
        event.remove(Engine, "engine_connect", counter.connected)


def breach(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``breach ARGS`` in this process; its exit code and standard output."""
    code, out, _ = run(*args, capsys=capsys)
    return code, out


def test_each_command_opens_one_database_engine(
    tmp_path: Path,
    engines: Engines,
    capsys: pytest.CaptureFixture[str],
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STANDIN_URL", simulator.url)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    people = str(phone_audience(tmp_path / "people.csv", 30))
    plugins = ("--plugins-dir", str(NOTIFIERS))

    def one_engine(*args: str) -> str:
        before = len(engines)
        code, output = breach(*plugins, *args, "--db", db, capsys=capsys)
        assert code == 0, (args, output)
        assert len(engines) - before == 1, args
        return output

    summary = one_engine("trigger", str(PLAYBOOK), "-a", people, "--dry-run", "--json",
                         "--outbox", str(tmp_path / "outbox"))  # fmt: skip
    assert json.loads(summary)["audience"]["people"] == 30
    live = json.loads(one_engine("trigger", str(PLAYBOOK), "-a", people, "--live", "--json"))
    incident = live["id"]
    one_engine("status")
    one_engine("status", incident, "--json")
    one_engine("timeline", incident)
    one_engine("run", "--until-idle")
    assert json.loads(one_engine("status", incident, "--json"))["state"] == "finished"
    other = json.loads(one_engine("trigger", str(PLAYBOOK), "-a", people, "--live", "--json"))
    one_engine("cancel", other["id"], "--by", "ic")


def test_commands_without_the_ledger_open_no_database(
    tmp_path: Path,
    engines: Engines,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["validate", str(PLAYBOOK)], ["plugins"], ["regimes"], ["playbooks"],
                 ["schema"]):  # fmt: skip
        code, _ = breach("--plugins-dir", str(NOTIFIERS), *args, capsys=capsys)
        assert code == 0, args
    assert len(engines) == 0
    assert list(tmp_path.iterdir()) == []  # no breach.db appeared


def test_a_webhook_that_creates_an_incident_opens_no_engine_of_its_own(
    tmp_path: Path, engines: Engines
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = load(write_config(tmp_path, GENERIC_ROUTE))
    with serving(config, db) as server:
        server.breach.ledger  # noqa: B018 - `breach serve` opens the ledger before listening
        assert len(engines) == 1
        body = json.dumps({"source": "dlp", "incident_ref": "DLP-1", "scope": {
            "records": 1200, "exfiltrated": True, "systems": "crm"}}).encode()  # fmt: skip
        answer = httpx.post(f"{server.url}/hooks/generic", content=body,
                            headers=signed_headers(body), timeout=30)  # fmt: skip
        assert answer.status_code == 201, answer.text
        again = signed_headers(body, timestamp=int(time.time()) + 1)  # a retry, signed afresh
        repeat = httpx.post(f"{server.url}/hooks/generic", content=body, headers=again,
                            timeout=30)  # fmt: skip
        assert repeat.status_code == 200, repeat.text
        assert len(engines) == 1
        assert [i["id"] for i in server.breach.incidents()] == [answer.json()["incident"]]


def test_status_sees_plugins_dir_and_uses_the_regimes_file_of_its_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    playbook = tmp_path / "regulated.yaml"
    playbook.write_text(REGULATED)
    regimes = tmp_path / "regimes.yaml"
    regimes.write_text(
        "gdpr-art33:\n  name: GDPR Art. 33 (tightened by policy)\n  notifies: supervisory "
        "authority\n  deadline: {amount: 48, unit: hours}\n"
    )
    people = str(phone_audience(tmp_path / "people.csv", 5))
    common = ("--plugins-dir", str(NOTIFIERS), "--regimes", str(regimes))
    code, output = breach(*common, "trigger", str(playbook), "-a", people, "--live",
                          "--aware-at", "2026-11-30T08:00:00", "--db", db, "--json",
                          capsys=capsys)  # fmt: skip
    assert code == 0, output
    triggered = json.loads(output)
    assert triggered["deadlines"][0]["due_at"].startswith("2026-12-02T08:00")

    code, output = breach(*common, "status", triggered["id"], "--db", db, "--json",
                          capsys=capsys)  # fmt: skip
    assert code == 0, output
    status = json.loads(output)
    assert [d["due_at"] for d in status["deadlines"]] == [
        d["due_at"] for d in triggered["deadlines"]
    ]
    # Without --plugins-dir the recorded playbook names a channel nobody serves: status still
    # answers, but cannot read the playbook's deadlines.
    code, output = breach("status", triggered["id"], "--db", db, "--json", capsys=capsys)
    assert code == 0, output
    assert json.loads(output)["deadlines"] == []


def test_the_session_parses_a_triggered_playbook_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import session as session_module

    calls: list[str] = []
    real = session_module.validate_text

    def counting(text: str, file: str, **kwargs: Any) -> Any:
        calls.append(file)
        return real(text, file, **kwargs)

    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(session_module, "validate_text", counting)
    people = str(phone_audience(tmp_path / "people.csv", 3))
    with Breach(f"sqlite:///{tmp_path / 'l.db'}", plugins_dir=NOTIFIERS) as one:
        playbook = one.playbook(PLAYBOOK)
        incident = one.trigger(playbook, audience=people, mode="live").incident_id
        one.engine().campaign(incident)
        one.status(incident)
    assert calls == []  # the parse from one.playbook() served the trigger, engine and status
    with Breach(f"sqlite:///{tmp_path / 'l.db'}", plugins_dir=NOTIFIERS) as restarted:
        restarted.engine().campaign(incident)
        restarted.status(incident)
    assert calls == [f"{incident}:playbook"]  # after a restart: the recorded text, once
