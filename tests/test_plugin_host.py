"""The plugin host: entry points, --plugins-dir, check_pending, observers and vetoes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator import hookspecs
from orchestrator.errors import PluginError
from orchestrator.plugin import IncidentEvent, Message, Notifier, hookimpl
from orchestrator.pluginhost import PluginHost

ROOT = Path(__file__).parent.parent
BUILTIN_CHANNELS = {"sms", "call", "email", "push", "announcement", "regulator"}


def breach(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", "from orchestrator.commands import main; main()", *args],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip


def test_builtin_plugins_register_through_entry_points() -> None:
    host = PluginHost()
    assert set(host.channels()) >= BUILTIN_CHANNELS
    names = {p.name: p for p in host.plugins()}
    assert {"core", "twilio", "sendgrid", "fcm", "announcement", "regulator"} <= set(names)
    assert names["twilio"].origin.startswith("entry point")
    assert "register_notifiers" in names["twilio"].hooks
    assert set(names["core"].sources) >= {"csv", "jsonl", "sql"}


def test_plugins_command_json() -> None:
    result = breach("plugins", "--json", env={"TWILIO_ACCOUNT_SID": ""})
    assert result.returncode == 0, result.stderr
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    assert listing["twilio"]["channels"] == ["call", "sms"]
    assert any("TWILIO_AUTH_TOKEN" in m for m in listing["twilio"]["missing_settings"])


def test_misspelled_hook_fails_loudly_naming_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text(
        textwrap.dedent("""
        from orchestrator import hookimpl

        @hookimpl
        def register_notifier(register):
            pass
    """)
    )
    with pytest.raises(
        PluginError,
        match="plugin 'typo' implements unknown hook "
        "'register_notifier'; did you mean 'register_notifiers'",
    ):
        PluginHost(plugins_dir=tmp_path)
    result = breach("--plugins-dir", str(tmp_path), "plugins")
    assert result.returncode == 2
    assert "plugin 'typo'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_broken_plugin_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    result = breach("--plugins-dir", str(tmp_path), "plugins")
    assert result.returncode == 2
    assert "plugin 'broken'" in result.stderr and "ModuleNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_hook_arguments_are_refused(tmp_path: Path) -> None:
    (tmp_path / "badargs.py").write_text(
        textwrap.dedent("""
        from orchestrator import hookimpl

        @hookimpl
        def register_notifiers(register, extra):
            pass
    """)
    )
    with pytest.raises(PluginError, match="plugin 'badargs'"):
        PluginHost(plugins_dir=tmp_path)


def test_allow_list_limits_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACH_LOAD_PLUGINS", "twilio")
    host = PluginHost()
    assert set(host.channels()) == {"sms", "call"}


def test_audience_source_from_a_plugin(tmp_path: Path) -> None:
    from orchestrator.audience import open_audience

    host = PluginHost(plugins_dir=Path(__file__).parent / "plugins")
    assert host.sources["inline"][0] == "inline_source"
    people = open_audience("inline:3", {"domain": "example.net"}, host.source_factory)
    assert [p.email for p in people] == [f"person{i}@example.net" for i in range(3)]
    assert len(list(people)) == 3  # a source can be read again, once per step


def test_receipt_handlers_are_registered_by_name() -> None:
    import asyncio

    from orchestrator.receipts import ReceiptRejected, ReceiptRequest

    host = PluginHost(plugins_dir=Path(__file__).parent / "plugins")
    plugin, handler = host.receipt_handlers["echo"]
    assert plugin == "echo_receipts"
    body = b'[{"outcome": "delivered", "provider_id": "SM1"}]'
    good = ReceiptRequest("http://127.0.0.1/receipts/echo", "POST", {"x-echo-secret": "s3cret"},
                          body)  # fmt: skip
    (update,) = asyncio.run(handler(good))
    assert (update.outcome, update.state, update.provider_id) == ("delivered", "delivered", "SM1")
    forged = ReceiptRequest(good.url, "POST", {"x-echo-secret": "guess"}, body)
    with pytest.raises(ReceiptRejected):
        asyncio.run(handler(forged))


def test_every_hook_is_documented_and_tested() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    tests = "".join(p.read_text("utf-8") for p in Path(__file__).parent.rglob("*.py"))
    for name in hookspecs.hook_names():
        assert f"`{name}" in readme, f"hook {name} is not documented in README.md"
        assert f"def {name}(" in tests, f"hook {name} has no test plugin"


THIRD_PARTY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "breach-fax"
        version = "1.2.3"
        dependencies = []

        [project.entry-points.breach]
        fax = "breach_fax"
    """,
    "breach_fax/__init__.py": """
        from orchestrator.plugin import Notifier, hookimpl


        class FaxGateway(Notifier):
            name = "fax-gateway"
            channel = "fax"
            contact = "phone"
            max_batch = 20
            default_rate = 0.5

            def build_payload(self, message):
                n = message.notice
                return {"fax_number": message.address, "title": n.subject,
                        "pages": [n.impact, n.measures, n.advice, n.contact]}


        @hookimpl
        def register_notifiers(register):
            register(FaxGateway)
    """,
}


@pytest.fixture(scope="module")
def fax_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third-party plugin built and installed by pip from a temporary directory."""
    source = tmp_path_factory.mktemp("breach-fax-src")
    for name, text in THIRD_PARTY.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(textwrap.dedent(text))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def test_third_party_plugin_adds_a_channel(fax_plugin: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(fax_plugin), os.environ.get("PYTHONPATH", "")])}
    listing = breach("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    fax = next(p for p in json.loads(listing.stdout) if p["name"] == "fax")
    assert fax["version"] == "1.2.3" and fax["channels"] == ["fax"]

    playbook = tmp_path / "fax.yaml"
    minimal = (Path(__file__).parent / "fixtures/playbooks/minimal.yaml").read_text("utf-8")
    playbook.write_text(minimal.replace("channel: sms", "channel: fax"))
    assert breach("validate", str(playbook)).returncode == 1  # no fax plugin without it
    assert breach("validate", str(playbook), env=env).returncode == 0

    audience = tmp_path / "people.csv"
    audience.write_text("id,name,phone,email\np1,Ana,+14155550101,\np2,Bo,,bo@example.org\n")
    run = breach("trigger", str(playbook), "--audience", str(audience), "--fact",
                 "affected_count=2", "--dry-run", "--outbox", str(tmp_path / "out"), "--db",
                 f"sqlite:///{tmp_path / 'l.db'}", "--json", env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    faxes = [json.loads(line) for line in (tmp_path / "out/fax.jsonl").read_text().splitlines()]
    assert [f["payload"]["fax_number"] for f in faxes] == ["+14155550101"]
    emails = (tmp_path / "out/email.jsonl").read_text().splitlines()
    assert len(emails) == 1 and json.loads(emails[0])["fallback"] is True


class _Observer:
    """An observer plugin that records what it is told, or fails on everything."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[IncidentEvent] = []

    @hookimpl
    def incident_event(self, event: IncidentEvent) -> None:
        if self.fail:
            raise RuntimeError("observer bug")
        self.seen.append(event)


class _Fax(Notifier):
    name = "fax-gateway"
    channel = "fax"

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {}


class _FaxPlugin:
    @hookimpl
    def register_notifiers(self, register: Callable[[type[Notifier]], None]) -> None:
        register(_Fax)


def test_hooks_are_traced_and_a_failing_observer_spares_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BREACH_TRACE_PLUGINS", "1")
    caplog.set_level(logging.DEBUG, logger="orchestrator.pluginhost")
    # A listener on each side of the failing one: whichever order observers run in, one of
    # them comes after the failure.
    first, failing, last = _Observer(), _Observer(fail=True), _Observer()
    host = PluginHost(entrypoints=False, extra=[
        ("first", first), ("failing", failing), ("fax", _FaxPlugin()), ("last", last)])  # fmt: skip
    event = IncidentEvent("inc-1", "step.fired", "sms-all")
    host.emit(event)

    assert first.seen == [event] and last.seen == [event]
    failures = [
        (r.levelno, r.__dict__.get("plugin"), r.__dict__.get("error"))
        for r in caplog.records
        if r.getMessage() == "observer failed"
    ]
    assert failures == [(logging.ERROR, "failing", "RuntimeError: observer bug")]
    assert host.notifier_classes["fax-gateway"] == ("fax", _Fax)  # who registered it is known
    trace = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    calls = [
        line.strip() for line in "".join(trace).splitlines() if line.strip().endswith("[hook]")
    ]
    assert "register_notifiers [hook]" in calls  # the fax plugin's registration
    assert "register_audience_sources [hook]" in calls  # the core's own sources
    assert calls.count("incident_event [hook]") == 3  # each observer, failing one included


def test_a_name_registered_twice_names_both_plugins() -> None:
    with pytest.raises(PluginError, match="plugin 'again' registers notifier 'fax-gateway', "
                       "already registered by plugin 'fax'"):  # fmt: skip
        PluginHost(entrypoints=False, extra=[("fax", _FaxPlugin()), ("again", _FaxPlugin())])


def test_a_plugin_that_cannot_be_hashed_is_refused_by_name() -> None:
    plugin = SimpleNamespace(incident_event=_Observer().incident_event)
    with pytest.raises(PluginError, match="plugin 'ns' is a SimpleNamespace"):
        PluginHost(entrypoints=False, extra=[("ns", plugin)])
