"""Live sending through the real firebase_admin SDK (send_each_async) against the simulator."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import firebase_admin
import pytest
from breach_fcm import FcmPush
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from factories import make_incident, make_message, make_notice, make_recipient, recording_server
from firebase_admin import messaging

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Outcome, Receipt
from orchestrator.simulator import Simulator

PROJECT = "acme-prod"
GOOGLE_FCM_URL = "https://fcm.googleapis.com/v1/projects/{0}/messages:send"


@pytest.fixture
def settings(simulator: Simulator) -> dict[str, str]:
    return {
        "FCM_PROJECT_ID": PROJECT,
        "FCM_ACCESS_TOKEN": simulator.config.fcm_access_token,
        "FCM_API_BASE_URL": simulator.url,
    }


def _send(notifier: FcmPush, batch: Sequence[Message], mode: Mode = "live") -> Sequence[Receipt]:
    async def run() -> Sequence[Receipt]:
        try:
            return await notifier.send(batch, mode)
        finally:
            await notifier.aclose()

    return asyncio.run(run())


def _push(token: str = "device-0001", delivery_id: str = "d-0001", **kw: Any) -> Message:
    return make_message("push", delivery_id=delivery_id, address=token, **kw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- success -------------------------------------------------------------------------------------


def test_each_message_is_sent_as_the_builder_wrote_it(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = FcmPush(settings)
    batch = [_push(f"device-{i}", f"d-{i}", notice=make_notice("ja")) for i in range(3)]

    receipts = _send(notifier, batch)

    requests = sorted(simulator.requests("fcm"), key=lambda r: r.body["message"]["token"])
    for message, request in zip(batch, requests, strict=True):
        payload = notifier.build_payload(message)
        assert request.path == payload["path"] == f"/v1/projects/{PROJECT}/messages:send"
        assert request.body == {"message": payload["message"]}  # validate_only false: omitted
    names = {m.delivery_id: m.message_id for m in simulator.accepted("fcm")}
    assert receipts == [Receipt(m.delivery_id, Outcome.SENT, names[m.delivery_id]) for m in batch]
    assert all(name.startswith(f"projects/{PROJECT}/messages/0:") for name in names.values())
    # the endpoint override reached this app only: the SDK's class attribute is as it was
    assert messaging._MessagingService.FCM_URL == GOOGLE_FCM_URL


def test_1200_messages_go_in_chunks_the_sdk_accepts(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    batch = [_push(f"device-{i}", f"d-{i}") for i in range(1200)]
    receipts = _send(FcmPush(settings), batch)
    # send_each_async raises ValueError above 500 messages: three chunks got through
    assert [r.delivery_id for r in receipts] == [m.delivery_id for m in batch]
    assert {r.outcome for r in receipts} == {Outcome.SENT}
    assert len(simulator.accepted("fcm")) == 1200
    assert len({r.provider_id for r in receipts}) == 1200


def test_per_message_results_keep_their_place_in_the_batch(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    batch = [
        _push("device-1", "d-1"),
        _push("unregistered-2", "d-2"),
        _push("invalid-3", "d-3"),
        make_message("push", delivery_id="d-4", recipient=make_recipient(push_token=None)),
        _push("device-5", "d-5", notice=make_notice(push="通知" * 1000)),
        _push("device-6", "d-6"),
    ]
    receipts = _send(FcmPush(settings), batch)
    assert [(r.delivery_id, r.outcome) for r in receipts] == [
        ("d-1", Outcome.SENT),
        ("d-2", Outcome.PERMANENT),
        ("d-3", Outcome.PERMANENT),
        ("d-4", Outcome.PERMANENT),
        ("d-5", Outcome.PERMANENT),
        ("d-6", Outcome.SENT),
    ]
    assert receipts[1].error == ("fcm NOT_FOUND (HTTP 404): the push token is no longer registered")
    assert receipts[2].error is not None
    assert receipts[2].error.startswith("fcm INVALID_ARGUMENT (HTTP 400): ")
    assert "no push token" in (receipts[3].error or "")
    assert "shorten" in (receipts[4].error or "")
    assert len(simulator.requests("fcm")) == 4  # the unbuildable two never left


def test_a_second_event_loop_gets_a_new_app(simulator: Simulator, settings: dict[str, str]) -> None:
    notifier = FcmPush(settings)
    first = asyncio.run(notifier.send([_push(delivery_id="d-1")], "live"))
    second = _send(notifier, [_push(delivery_id="d-2")])
    assert [r.outcome for r in (*first, *second)] == [Outcome.SENT, Outcome.SENT]


def test_aclose_deletes_the_app(settings: dict[str, str]) -> None:
    notifier = FcmPush(settings)

    async def run() -> str:
        await notifier.send([_push()], "live")
        name: str = notifier.app().app.name
        await notifier.aclose()
        return name

    name = asyncio.run(run())
    with pytest.raises(ValueError, match="does not exist"):
        firebase_admin.get_app(name)


# -- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("incident_mode", ["live", "sandbox"])
def test_sandbox_is_a_dry_run_that_delivers_nothing(
    simulator: Simulator, settings: dict[str, str], incident_mode: str
) -> None:
    message = _push(incident=make_incident(mode=incident_mode))
    [receipt] = _send(FcmPush(settings), [message], "sandbox")
    [request] = simulator.requests("fcm")
    assert request.body["validate_only"] is True
    assert request.outcome == "sandbox"
    assert receipt == Receipt(
        "d-0001", Outcome.SENT, f"projects/{PROJECT}/messages/fake_message_id"
    )
    assert simulator.accepted() == []


def test_live_mode_is_never_a_dry_run(simulator: Simulator, settings: dict[str, str]) -> None:
    _send(FcmPush(settings), [_push(incident=make_incident(mode="sandbox"))], "live")
    assert "validate_only" not in simulator.requests("fcm")[0].body
    assert len(simulator.accepted("fcm")) == 1


def test_dry_run_touches_neither_the_network_nor_the_sdk(simulator: Simulator) -> None:
    notifier = FcmPush({})
    receipts = _send(notifier, [_push(delivery_id="d-1"), _push(delivery_id="d-2")], "dry-run")
    assert [r.outcome for r in receipts] == [Outcome.SENT] * 2
    assert simulator.requests() == []
    assert notifier._app is None


# -- errors --------------------------------------------------------------------------------------


def test_quota_exceeded_is_transient_with_retry_after(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("fcm", throttle_rate=1.0, retry_after=7)
    receipts = _send(FcmPush(settings), [_push(f"device-{i}", f"d-{i}") for i in range(3)])
    assert [(r.outcome, r.retry_after) for r in receipts] == [(Outcome.TRANSIENT, 7.0)] * 3
    assert (receipts[0].error or "").startswith("fcm RESOURCE_EXHAUSTED (HTTP 429): Quota exceeded")
    assert len(simulator.requests("fcm")) == 3  # the async path does not retry 429 itself


@pytest.mark.parametrize(("status", "code"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_500_and_503_are_transient_after_the_sdks_own_retries(
    simulator: Simulator, settings: dict[str, str], status: int, code: str
) -> None:
    simulator.configure("fcm", error_rate=1.0, error_statuses=(status,))
    [receipt] = _send(FcmPush(settings), [_push()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert (receipt.error or "").startswith(f"fcm {code} (HTTP {status}): ")
    # the SDK retried 4 times with backoff before reporting: the core's retries multiply these
    assert len(simulator.requests("fcm")) == 5


def test_a_gateway_502_is_transient_without_its_html(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("fcm", error_rate=1.0, error_statuses=(502,))
    [receipt] = _send(FcmPush(settings), [_push()])
    assert (receipt.outcome, receipt.error) == (Outcome.TRANSIENT, "fcm HTTP 502")
    assert len(simulator.requests("fcm")) == 1


@pytest.mark.parametrize("fault", ["drop_rate", "lost_reply_rate"])
def test_a_dropped_connection_is_transient(
    simulator: Simulator, settings: dict[str, str], fault: str
) -> None:
    simulator.configure("fcm", **{fault: 1.0})
    [receipt] = _send(FcmPush(settings), [_push()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert (receipt.error or "").startswith("fcm: connection failed")
    assert receipt.uncertain  # sent, then the line went dead: FCM may have it


def test_a_timeout_is_transient_and_bounded_by_the_setting(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("fcm", timeout_rate=1.0, timeout_seconds=10)
    started = time.monotonic()
    [receipt] = _send(FcmPush({**settings, "FCM_TIMEOUT": "0.3"}), [_push()])
    assert time.monotonic() - started < 3
    assert (receipt.outcome, receipt.error) == (
        Outcome.TRANSIENT,
        "fcm: no answer within 0.3 s (FCM_TIMEOUT)",
    )
    assert receipt.uncertain


def test_connection_refused_is_transient(settings: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    [receipt] = _send(FcmPush({**settings, "FCM_API_BASE_URL": url}), [_push()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert (receipt.error or "").startswith("fcm UNAVAILABLE")
    assert not receipt.uncertain  # no connection: FCM never had it


def test_a_refused_token_is_permanent_and_never_quoted(settings: dict[str, str]) -> None:
    token = "ya29.wrong-token-81c2"
    [receipt] = _send(FcmPush({**settings, "FCM_ACCESS_TOKEN": token}), [_push()])
    assert receipt.outcome is Outcome.PERMANENT
    assert "FCM refused our credentials" in (receipt.error or "")
    assert token not in (receipt.error or "")


def test_every_message_gets_exactly_one_receipt_under_random_faults(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    faults = {"drop_rate": 0.1, "throttle_rate": 0.1, "error_rate": 0.1, "seed": 9}
    simulator.configure("fcm", error_statuses=(502,), **faults)
    batch = [_push(f"device-{i}", f"d-{i}") for i in range(700)]
    receipts = _send(FcmPush(settings), batch)
    assert Counter(r.delivery_id for r in receipts) == Counter(m.delivery_id for m in batch)
    sent = {r.delivery_id for r in receipts if r.outcome is Outcome.SENT}
    assert sent == {m.delivery_id for m in simulator.accepted("fcm")}
    assert {r.outcome for r in receipts} == {Outcome.SENT, Outcome.TRANSIENT}


# -- credentials and settings --------------------------------------------------------------------


def _service_account(path: Path, token_uri: str = "https://oauth2.googleapis.com/token") -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": f"breach@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


def test_a_service_account_file_opens_an_app_without_calling_google(tmp_path: Path) -> None:
    settings = {
        "FCM_PROJECT_ID": PROJECT,
        "GOOGLE_APPLICATION_CREDENTIALS": str(_service_account(tmp_path / "sa.json")),
    }
    notifier = FcmPush(settings)
    assert notifier.missing_settings() == []

    async def run() -> str:
        app = notifier.app()  # parses the file; the token is fetched by the first send only
        project: str = app.app.project_id
        await notifier.aclose()
        return project

    assert asyncio.run(run()) == PROJECT


def test_a_service_account_token_is_fetched_once_for_all_messages(tmp_path: Path) -> None:
    # one server plays Google's token endpoint and FCM: every POST gets both answers' fields
    reply = {"access_token": "ya29.minted", "expires_in": 3600, "name": "projects/p/messages/1"}
    with recording_server(reply=reply) as server:
        account = _service_account(tmp_path / "sa.json", token_uri=server.url + "/token")
        settings = {
            "FCM_PROJECT_ID": PROJECT,
            "GOOGLE_APPLICATION_CREDENTIALS": str(account),
            "FCM_API_BASE_URL": server.url,
        }
        batch = [_push(f"device-{i}", f"d-{i}") for i in range(40)]
        receipts = _send(FcmPush(settings), batch)
    assert {r.outcome for r in receipts} == {Outcome.SENT}
    token_calls = [r for r in server.requests if r.path == "/token"]
    sends = [r for r in server.requests if r.path != "/token"]
    assert len(token_calls) == 1  # 40 messages in flight at once waited for one token
    assert len(sends) == 40
    tokens = {v for r in sends for k, v in r.headers.items() if k.lower() == "authorization"}
    assert tokens == {"Bearer ya29.minted"}
    assert {r.path for r in sends} == {f"/v1/projects/{PROJECT}/messages:send"}


def test_a_token_revoked_mid_campaign_is_renewed_once_and_every_message_sent_once(
    simulator: Simulator, tmp_path: Path
) -> None:
    """Google's tokens last an hour and a campaign can outlast one: FCM's 401 makes the plugin
    fetch a new token from the real OAuth flow (google-auth against the simulator's token
    endpoint), once for every message that met the 401, and send those messages again."""
    account = _service_account(tmp_path / "sa.json", token_uri=simulator.url + "/token")
    settings = {
        "FCM_PROJECT_ID": PROJECT,
        "GOOGLE_APPLICATION_CREDENTIALS": str(account),
        "FCM_API_BASE_URL": simulator.url,
    }
    notifier = FcmPush(settings)
    first = [_push(f"device-{i}", f"d-{i}") for i in range(20)]
    second = [_push(f"device-{i}", f"d-{i}") for i in range(20, 60)]

    async def run() -> tuple[list[Receipt], int]:
        try:
            receipts = list(await notifier.send(first, "live"))
            revoked = simulator.revoke_access_tokens()
            return receipts + list(await notifier.send(second, "live")), revoked
        finally:
            await notifier.aclose()

    receipts, revoked = asyncio.run(run())
    assert revoked == 1
    assert [(r.delivery_id, r.outcome) for r in receipts] == [
        (m.delivery_id, Outcome.SENT) for m in first + second
    ]
    assert simulator.token_grants == 2  # the first token, and one renewal shared by all
    refused = [r for r in simulator.requests("fcm") if r.outcome == "unauthorized"]
    assert 1 <= len(refused) <= len(second)
    accepted = Counter(m.delivery_id for m in simulator.accepted("fcm"))
    assert accepted == Counter(m.delivery_id for m in first + second)  # each exactly once


def test_an_unreachable_token_service_is_transient_and_nothing_is_sent(
    simulator: Simulator, settings: dict[str, str], tmp_path: Path
) -> None:
    token_uri = f"http://127.0.0.1:{_closed_port()}/token"
    account = _service_account(tmp_path / "sa.json", token_uri=token_uri)
    settings = {**settings, "GOOGLE_APPLICATION_CREDENTIALS": str(account)}
    del settings["FCM_ACCESS_TOKEN"]
    receipts = _send(FcmPush(settings), [_push(f"device-{i}", f"d-{i}") for i in range(3)])
    assert {(r.outcome, r.error, r.uncertain) for r in receipts} == {
        (Outcome.TRANSIENT, "fcm: could not reach Google's token service", False)
    }
    assert simulator.requests("fcm") == []


@pytest.mark.parametrize("content", [None, "{not json", '{"type": "authorized_user"}'])
def test_an_unusable_service_account_file_is_a_configuration_error(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "sa.json"
    if content is not None:
        path.write_text(content)
    settings = {"FCM_PROJECT_ID": PROJECT, "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    with pytest.raises(ConfigurationError, match="GOOGLE_APPLICATION_CREDENTIALS") as caught:
        _send(FcmPush(settings), [_push()])
    assert "authorized_user" not in str(caught.value)


def test_missing_settings(settings: dict[str, str]) -> None:
    token_only = {"FCM_PROJECT_ID": PROJECT, "FCM_ACCESS_TOKEN": "t"}
    assert FcmPush(token_only).missing_settings() == []
    with pytest.raises(ConfigurationError, match="FCM_PROJECT_ID"):
        _send(FcmPush({"FCM_ACCESS_TOKEN": "t"}), [_push()])
    with pytest.raises(ConfigurationError, match="FCM_TIMEOUT"):
        _send(FcmPush({**settings, "FCM_TIMEOUT": "0"}), [_push()])
    secret = {s.name for s in FcmPush.settings_spec if s.secret}
    assert secret == {"FCM_ACCESS_TOKEN"}


def test_listing_plugins_loads_no_provider_sdk() -> None:
    code = (
        "import sys\n"
        "from orchestrator.pluginhost import PluginHost\n"
        "host = PluginHost(settings={})\n"
        "names = [p.name for p in host.plugins()]\n"
        "assert {'twilio', 'sendgrid', 'fcm'} <= set(names), names\n"
        "assert set(host.receipt_handlers) >= {'twilio', 'sendgrid'}\n"
        "loaded = [m for m in ('twilio', 'sendgrid', 'firebase_admin', 'google.auth')\n"
        "          if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


# -- overlapping batches -------------------------------------------------------------------------


class _CountingSlots(asyncio.Semaphore):
    """A semaphore that remembers the most slots ever held at once."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.size, self.most = value, 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.most = max(self.most, self.size - self._value)
        return True


class _NarrowFcmPush(FcmPush):
    in_flight = 7


def test_overlapping_batches_share_one_bounded_pool(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = _NarrowFcmPush(settings)
    batches = [[_push(f"device-{b}-{i}", f"d-{b}-{i}") for i in range(120)] for b in range(4)]
    slots = _CountingSlots(_NarrowFcmPush.in_flight)

    async def run() -> list[Sequence[Receipt]]:
        try:
            pool = notifier.app().pool
            pool.slots = slots
            got = await asyncio.gather(*(notifier.send(batch, "live") for batch in batches))
            # the four batches went out over the app's one session, its slots all given back
            assert pool._session is not None and slots._value == slots.size
            return list(got)
        finally:
            await notifier.aclose()

    receipts = asyncio.run(run())

    # never more requests in flight than the pool allows, and the pool was used to the full
    assert slots.most == _NarrowFcmPush.in_flight
    for batch, answered in zip(batches, receipts, strict=True):
        assert [r.delivery_id for r in answered] == [m.delivery_id for m in batch]
        assert {r.outcome for r in answered} == {Outcome.SENT}
    assert len(simulator.accepted("fcm")) == 480
    # each answer reached its own message: 480 distinct message names
    assert len({r.provider_id for answered in receipts for r in answered}) == 480
