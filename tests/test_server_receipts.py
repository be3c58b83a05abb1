"""Provider receipts through the server: handlers from plugins (loaded with --plugins-dir),
the request they see, rejections, and updates applied to the ledger."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx
import pytest
from fixtures.server.harness import PEOPLE, PLAYBOOK, load, serving, write_config

from orchestrator import hookimpl
from orchestrator.ledger import Ledger
from orchestrator.notifier import Notifier, Setting
from orchestrator.pluginhost import PluginHost
from orchestrator.receipts import ReceiptRequest, ReceiptUpdate
from orchestrator.session import Breach

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def sent_key(db: str, tmp_path: Path) -> str:
    """A dry-run incident whose deliveries are `sent`: the key of one e-mail delivery."""
    result = Breach(db).trigger(
        PLAYBOOK,
        audience=str(PEOPLE),
        facts={"exfiltration_confirmed": True},
        mode="dry-run",
        outbox=tmp_path / "outbox",
    )
    return f"{result.incident_id}:email-if-confirmed:cust-00000003"


def delivery_state(db: str, key: str) -> str:
    from sqlalchemy import select

    from orchestrator.ledger import Delivery

    ledger = Ledger(db)
    with ledger.session() as session:
        state = session.scalar(select(Delivery.state).where(Delivery.key == key))
    ledger.close()
    return str(state)


# -- the request a handler sees -------------------------------------------------------------------


class RecorderNotifier(Notifier):
    name = "recorder"
    channel = "recorded"
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("RECORDER_KEY", "signing key", secret=True),
    )

    def build_payload(self, message: Any) -> dict[str, Any]:
        return {}


def recorder_plugin(seen: list[ReceiptRequest]) -> object:
    async def handler(request: ReceiptRequest) -> Sequence[ReceiptUpdate]:
        seen.append(request)
        return []

    @hookimpl
    def register_receipts(register: Callable[..., None]) -> None:
        register("recorder", handler)

    @hookimpl
    def register_notifiers(register: Callable[..., None]) -> None:
        register(RecorderNotifier)

    plugin = ModuleType("recorder")
    plugin.register_receipts = register_receipts  # type: ignore[attr-defined]
    plugin.register_notifiers = register_notifiers  # type: ignore[attr-defined]
    return plugin


@pytest.mark.parametrize("behind_proxy", [False, True])
def test_handler_sees_url_headers_form_and_its_settings(
    tmp_path: Path, db: str, behind_proxy: bool
) -> None:
    seen: list[ReceiptRequest] = []
    host = PluginHost(
        extra=[("recorder", recorder_plugin(seen))],
        settings={"RECORDER_KEY": "k-123456", "OTHER_SECRET": "x"},
    )
    path = write_config(tmp_path)
    if behind_proxy:
        path.write_text(path.read_text().replace("[server]\n", "[server]\nbehind_proxy = true\n"))
    with serving(load(path, host), db, host=host) as server:
        response = httpx.post(
            f"{server.url}/receipts/recorder?token=a%2Fb&x=1",
            content=b"MessageSid=SM1&MessageStatus=delivered&ErrorCode=",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "hooks.example.org",
                "X-Twilio-Signature": "abc",
            },
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "updates": 0, "applied": 0}
    (request,) = seen
    base = "https://hooks.example.org" if behind_proxy else server.url
    assert request.url == f"{base}/receipts/recorder?token=a%2Fb&x=1"  # exactly as called
    assert request.method == "POST"
    assert request.headers["x-twilio-signature"] == "abc"
    assert request.body == b"MessageSid=SM1&MessageStatus=delivered&ErrorCode="
    assert request.form == {"MessageSid": "SM1", "MessageStatus": "delivered", "ErrorCode": ""}
    assert request.settings == {"RECORDER_KEY": "k-123456"}  # its plugin's settings only


# -- the fixture plugin, loaded from the plugins folder -------------------------------------------


@pytest.fixture
def echo_host() -> PluginHost:
    return PluginHost(plugins_dir=PLUGINS)


def test_rejected_receipt_is_a_problem_and_changes_nothing(
    tmp_path: Path, db: str, sent_key: str, echo_host: PluginHost
) -> None:
    body = json.dumps([{"outcome": "delivered", "delivery_key": sent_key}])
    with serving(load(write_config(tmp_path), echo_host), db, host=echo_host) as server:
        response = httpx.post(
            f"{server.url}/receipts/echo", content=body, headers={"X-Echo-Secret": "guess"}
        )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "missing or wrong X-Echo-Secret"
    assert delivery_state(db, sent_key) == "sent"


def test_a_receipt_applies_only_to_what_its_own_plugin_sent(
    tmp_path: Path, db: str, sent_key: str, echo_host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    """The echo plugin has a genuine handler but sent nothing: a receipt it passes on for
    SendGrid's delivery, even naming its key and provider id, changes nothing and is logged."""
    from sqlalchemy import update

    from orchestrator.ledger import DELIVERIES

    ledger = Ledger(db)
    with ledger.engine.begin() as connection:
        connection.execute(update(DELIVERIES).where(DELIVERIES.c.key == sent_key)
                           .values(provider_message_id="SG-1"))  # fmt: skip
    receipt = {"outcome": "delivered", "delivery_key": sent_key, "provider_id": "SG-1"}
    body = json.dumps([receipt, {"outcome": "bounce", "provider_id": "unknown-id"}])
    with serving(load(write_config(tmp_path), echo_host), db, host=echo_host) as server:
        response = httpx.post(
            f"{server.url}/receipts/echo", content=body, headers={"X-Echo-Secret": "s3cret"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "updates": 2, "applied": 0}
    assert delivery_state(db, sent_key) == "sent"
    assert any(r.getMessage() == "receipts changed nothing" and r.__dict__["unmatched"] == 2
               for r in caplog.records)  # fmt: skip
    # the same receipt, from the plugin whose notifier sent the message, is applied
    scoped = Breach(db).apply_receipts([ReceiptUpdate(**receipt)], notifiers=["sendgrid-email"])
    assert scoped == 1 and delivery_state(db, sent_key) == "delivered"
    ledger.close()


def test_an_unknown_outcome_is_the_handlers_failure_and_changes_nothing(
    tmp_path: Path, db: str, sent_key: str, echo_host: PluginHost
) -> None:
    body = json.dumps([{"outcome": "exploded", "delivery_key": sent_key}])
    with serving(load(write_config(tmp_path), echo_host), db, host=echo_host) as server:
        response = httpx.post(
            f"{server.url}/receipts/echo", content=body, headers={"X-Echo-Secret": "s3cret"}
        )
    assert response.status_code == 500
    assert "plugin 'echo_receipts' failed on this receipt (ValueError)" in response.text
    assert delivery_state(db, sent_key) == "sent"


def test_unknown_handler_and_oversized_receipt(
    tmp_path: Path, db: str, echo_host: PluginHost
) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[server]\n", "[server]\nmax_body_bytes = 100\n"))
    with serving(load(path, echo_host), db, host=echo_host) as server:
        unknown = httpx.post(f"{server.url}/receipts/nope", content=b"[]")
        large = httpx.post(
            f"{server.url}/receipts/echo",
            content=b"[" + b" " * 200 + b"]",
            headers={"X-Echo-Secret": "s3cret"},
        )
    assert unknown.status_code == 404
    assert "no plugin handles receipts named 'nope' (echo" in unknown.json()["detail"]
    assert large.status_code == 413


# -- the real command -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def breach_serve(tmp_path: Path, db: str) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "--plugins-dir",
            str(PLUGINS),
            "serve",
            "--config",
            str(write_config(tmp_path)),
            "--port",
            str(port),
            "--db",
            db,
            "--log-json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        log.close()
    assert process.returncode == 0, (tmp_path / "serve.log").read_text()


def test_breach_serve_mounts_plugins_dir_receipt_handlers(
    breach_serve: str, db: str, sent_key: str, tmp_path: Path
) -> None:
    health = httpx.get(f"{breach_serve}/healthz").json()
    assert "echo" in health["receipts"]
    body = json.dumps([{"outcome": "delivered", "delivery_key": sent_key}])
    forged = httpx.post(
        f"{breach_serve}/receipts/echo", content=body, headers={"X-Echo-Secret": "nope"}
    )
    assert forged.status_code == 401
    genuine = httpx.post(
        f"{breach_serve}/receipts/echo", content=body, headers={"X-Echo-Secret": "s3cret"}
    )
    assert genuine.status_code == 200
    # authenticated, but a bare key names nothing, and the echo plugin sent nothing anyway
    assert genuine.json() == {"status": "accepted", "updates": 1, "applied": 0}
    assert delivery_state(db, sent_key) == "sent"
    deadline = time.monotonic() + 10
    while True:  # the request line is written just after the response is sent
        lines = [
            json.loads(line)
            for line in (tmp_path / "serve.log").read_text().splitlines()
            if line.startswith("{")
        ]
        statuses = [
            r["status"]
            for r in lines
            if r.get("event") == "request" and r.get("path") == "/receipts/echo"
        ]
        if len(statuses) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert statuses == [401, 200]
    assert "s3cret" not in json.dumps(lines)  # headers are never logged


def test_receipts_of_an_unconfigured_provider_are_503_naming_the_setting(
    tmp_path: Path, db: str
) -> None:
    """Twilio's handler cannot check a signature without the auth token: the server says so
    (and Twilio retries later), instead of failing with a 500."""
    host = PluginHost(settings={})
    with serving(load(write_config(tmp_path), host), db, host=host) as server:
        response = httpx.post(f"{server.url}/receipts/twilio",
                              data={"MessageSid": "SM1", "MessageStatus": "delivered"},
                              headers={"X-Twilio-Signature": "x"})  # fmt: skip
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "300"
    assert "TWILIO_AUTH_TOKEN is not set" in response.json()["detail"]
