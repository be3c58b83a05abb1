"""Twilio status callbacks: the simulator posts them, a small receiver feeds the real handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

import aiohttp
import breach_twilio
import pytest
from aiohttp import web
from breach_twilio import TwilioCall, TwilioSms
from breach_twilio.receipts import handle
from factories import make_message

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Notifier, Outcome, Receipt
from orchestrator.pluginhost import PluginHost
from orchestrator.receipts import (
    ReceiptHandler,
    ReceiptOutcome,
    ReceiptRejected,
    ReceiptRequest,
    ReceiptUpdate,
)
from orchestrator.simulator import Simulator, twilio_signature

T = TypeVar("T")


@dataclass
class Receiver:
    """A stand-in for the webhook server: what it mounts at /receipts/twilio, and what it got."""

    url: str
    updates: list[ReceiptUpdate] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@asynccontextmanager
async def receiver(settings: Mapping[str, str]) -> AsyncIterator[Receiver]:
    """Serve the ``twilio`` handler on 127.0.0.1 the way the server mounts it."""
    registered: dict[str, ReceiptHandler] = {}
    breach_twilio.register_receipts(register=registered.__setitem__)
    handler = registered["twilio"]

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        form = {k: str(v) for k, v in (await request.post()).items()}
        incoming = ReceiptRequest(
            url=str(request.url),
            method=request.method,
            headers=dict(request.headers),
            body=raw,
            form=form,
            settings=settings,
        )
        try:
            got.updates.extend(await handler(incoming))
        except ReceiptRejected as exc:
            got.rejected.append(str(exc))
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/receipts/twilio", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    got = Receiver(url=f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield got
    finally:
        await runner.cleanup()


@pytest.fixture
def settings(simulator: Simulator) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": simulator.config.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": simulator.config.twilio_auth_token,
        "TWILIO_FROM": "+15557650000",
        "TWILIO_API_BASE_URL": simulator.url,
    }


def _campaign(
    simulator: Simulator,
    settings: dict[str, str],
    notifier_class: type[TwilioSms | TwilioCall],
    messages: Callable[[], list[Message]],
) -> tuple[Sequence[Receipt], Receiver]:
    """Send through the simulator with callbacks to a receiver; wait for every callback."""

    async def run() -> tuple[Sequence[Receipt], Receiver]:
        async with receiver(settings) as got:
            notifier: Notifier = notifier_class({**settings, "BREACH_RECEIPT_BASE_URL": got.url})
            try:
                receipts = await notifier.send(messages(), "live")
            finally:
                await notifier.aclose()
            await asyncio.to_thread(simulator.drain)
            return receipts, got

    return asyncio.run(run())


def test_sms_callbacks_become_delivered_and_failed_updates(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("twilio", receipt_failure_rate=0.5, seed=11)
    # ids with characters that URL libraries re-encode: the signature must still match
    ids = [f"inc-7:sms step/{i}:r+{i}@ex ample" for i in range(12)]
    receipts, got = _campaign(
        simulator,
        settings,
        TwilioSms,
        lambda: [
            make_message("sms", delivery_id=d, address=f"+4477009001{i:02}")
            for i, d in enumerate(ids)
        ],
    )
    assert got.rejected == []
    assert all(c.status == 204 for c in simulator.callbacks("twilio"))
    sid_of = {r.delivery_id: r.provider_id for r in receipts}
    assert all(r.outcome is Outcome.SENT for r in receipts)

    # exactly one final update per message; "sent" callbacks change nothing
    assert sorted(u.delivery_key or "" for u in got.updates) == sorted(ids)
    states = {(u.outcome, u.state) for u in got.updates}
    # the seed gives both; Twilio's "failed" and "undelivered" both mean the handset never got it
    assert states == {
        (ReceiptOutcome.DELIVERED, "delivered"),
        (ReceiptOutcome.UNDELIVERED, "failed"),
    }
    for update in got.updates:
        assert update.provider_id == sid_of[update.delivery_key or ""]
        if update.state == "delivered":
            assert (update.event, update.reason) == ("delivered", None)
        else:
            assert (update.event, update.reason) in {
                ("undelivered", "undelivered: 30003 (unreachable destination handset)"),
                ("failed", "failed: 30008 (unknown error)"),
            }
    sent_callbacks = [
        c for c in simulator.callbacks("twilio") if c.payload["MessageStatus"] == "sent"
    ]
    assert sent_callbacks  # they were posted, and ignored


def test_call_callbacks_map_completed_busy_and_no_answer(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("twilio", receipt_failure_rate=0.6, seed=5)
    receipts, got = _campaign(
        simulator,
        settings,
        TwilioCall,
        lambda: [make_message("call", delivery_id=f"c-{i}") for i in range(10)],
    )
    assert got.rejected == []
    statuses = [c.payload["CallStatus"] for c in simulator.callbacks("twilio")]
    assert {"initiated", "ringing", "completed"} <= set(statuses)
    assert {"busy", "no-answer"} & set(statuses)
    keys = [u.delivery_key or "" for u in got.updates]
    assert sorted(keys) == sorted(f"c-{i}" for i in range(10))  # one final each
    for update in got.updates:
        if update.event == "completed":
            assert (update.outcome, update.state) == (ReceiptOutcome.DELIVERED, "delivered")
        else:
            assert (update.outcome, update.state) == (ReceiptOutcome.UNDELIVERED, "failed")
            assert update.reason == f"call {update.event}"
            assert update.event in {"busy", "no-answer"}
    assert {r.provider_id for r in receipts} == {u.provider_id for u in got.updates}


# -- forged and malformed requests ----------------------------------------------------------------


def _run(awaitable: Awaitable[T]) -> T:
    async def run() -> T:
        return await awaitable

    return asyncio.run(run())


URL = "https://breach.example/receipts/twilio?delivery_id=inc-1%3Asms%3Ap-1"
FIELDS = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "To": "+447700900123"}


def _request(
    fields: Mapping[str, str],
    signature: str | None,
    settings: Mapping[str, str],
    url: str = URL,
    form: bool = True,
) -> ReceiptRequest:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return ReceiptRequest(
        url=url,
        method="POST",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        body=urlencode(fields).encode(),
        form=dict(fields) if form else {},
        settings=settings,
    )


def test_a_genuine_signature_is_accepted_with_and_without_parsed_form() -> None:
    settings = {"TWILIO_AUTH_TOKEN": "tok"}
    signature = twilio_signature("tok", URL, FIELDS)
    for form in (True, False):  # the server may hand over the raw body only
        [update] = _run(handle(_request(FIELDS, signature, settings, form=form)))
        assert update == ReceiptUpdate(
            ReceiptOutcome.DELIVERED, "inc-1:sms:p-1", FIELDS["MessageSid"], None, "delivered"
        )


@pytest.mark.parametrize(
    ("signature", "fields"),
    [
        (None, FIELDS),  # no header at all
        ("", FIELDS),
        (twilio_signature("another-token", URL, FIELDS), FIELDS),  # wrong key
        # signed for other content: a "failed" receipt turned into "delivered"
        (twilio_signature("tok", URL, {**FIELDS, "MessageStatus": "failed"}), FIELDS),
        # signed for another delivery: the query is part of what is signed
        (twilio_signature("tok", URL.replace("p-1", "p-2"), FIELDS), FIELDS),
    ],
)
def test_forged_callbacks_are_rejected(signature: str | None, fields: dict[str, str]) -> None:
    with pytest.raises(ReceiptRejected) as caught:
        _run(handle(_request(fields, signature, {"TWILIO_AUTH_TOKEN": "tok"})))
    assert caught.value.status == 401
    assert "tok" not in str(caught.value)


def test_forged_callbacks_are_refused_over_http(simulator: Simulator) -> None:
    async def run() -> tuple[list[int], Receiver]:
        async with receiver({"TWILIO_AUTH_TOKEN": "tok"}) as got:
            url = got.url + "/receipts/twilio?delivery_id=d-1"
            statuses = []
            async with aiohttp.ClientSession() as session:
                for signature in ("bogus", twilio_signature("guess", url, FIELDS)):
                    headers = {"X-Twilio-Signature": signature}
                    async with session.post(url, data=FIELDS, headers=headers) as response:
                        statuses.append(response.status)
                genuine = {"X-Twilio-Signature": twilio_signature("tok", url, FIELDS)}
                async with session.post(url, data=FIELDS, headers=genuine) as response:
                    statuses.append(response.status)
            return statuses, got

    statuses, got = asyncio.run(run())
    assert statuses == [401, 401, 204]
    assert [u.delivery_key for u in got.updates] == ["d-1"]


def test_behind_a_proxy_the_public_url_is_what_twilio_signed() -> None:
    public = "https://breach.example/receipts/twilio?delivery_id=d-9"
    internal = "http://10.0.0.5:8080/receipts/twilio?delivery_id=d-9"
    signature = twilio_signature("tok", public, FIELDS)
    settings = {"TWILIO_AUTH_TOKEN": "tok", "BREACH_RECEIPT_BASE_URL": "https://breach.example/"}
    [update] = _run(handle(_request(FIELDS, signature, settings, url=internal)))
    assert update.delivery_key == "d-9"
    with pytest.raises(ReceiptRejected):
        _run(handle(_request(FIELDS, signature, {"TWILIO_AUTH_TOKEN": "tok"}, url=internal)))


def test_the_auth_token_may_come_from_a_file(tmp_path: Path) -> None:
    # The host resolves NAME_FILE; the handler reads the resolved settings it is handed.
    secret = tmp_path / "twilio-token"
    secret.write_text("tok\n")
    signature = twilio_signature("tok", URL, FIELDS)
    host = PluginHost(settings={"TWILIO_AUTH_TOKEN_FILE": str(secret)})
    settings = host.plugin_settings("twilio")
    assert settings["TWILIO_AUTH_TOKEN"] == "tok"
    assert len(_run(handle(_request(FIELDS, signature, settings)))) == 1
    with pytest.raises(ConfigurationError, match="TWILIO_AUTH_TOKEN"):
        _run(handle(_request(FIELDS, signature, {"TWILIO_AUTH_TOKEN_FILE": str(secret)})))


def test_without_an_auth_token_nothing_is_trusted() -> None:
    with pytest.raises(ConfigurationError, match="TWILIO_AUTH_TOKEN"):
        _run(handle(_request(FIELDS, "x", {})))


def test_a_signed_request_that_is_not_a_status_callback_is_a_bad_request() -> None:
    fields = {"Body": "hello", "From": "+447700900123"}  # an inbound SMS webhook
    request = _request(fields, twilio_signature("tok", URL, fields), {"TWILIO_AUTH_TOKEN": "tok"})
    with pytest.raises(ReceiptRejected) as caught:
        _run(handle(request))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"MessageStatus": "queued"}, []),
        ({"MessageStatus": "sent"}, []),
        ({"MessageStatus": "read"}, [("delivered", None)]),
        ({"MessageStatus": "canceled"}, [("undelivered", "canceled")]),
        ({"MessageStatus": "undelivered", "ErrorCode": "30007"},
         [("undelivered", "undelivered: 30007 (filtered by the carrier as spam)")]),
        ({"MessageStatus": "failed", "ErrorCode": "39999"}, [("undelivered", "failed: 39999")]),
        ({"SmsStatus": "delivered"}, [("delivered", None)]),
        ({"CallStatus": "ringing"}, []),
        ({"CallStatus": "in-progress"}, []),
        ({"CallStatus": "completed", "CallDuration": "31"}, [("delivered", None)]),
        ({"CallStatus": "busy"}, [("undelivered", "call busy")]),
        ({"CallStatus": "no-answer"}, [("undelivered", "call no-answer")]),
        ({"CallStatus": "failed"}, [("undelivered", "call failed")]),
        ({"CallStatus": "canceled"}, [("undelivered", "call canceled")]),
    ],
)  # fmt: skip
def test_status_mapping(fields: dict[str, str], expected: list[tuple[str, str | None]]) -> None:
    request = _request(fields, twilio_signature("tok", URL, fields), {"TWILIO_AUTH_TOKEN": "tok"})
    updates = _run(handle(request))
    assert [(u.outcome, u.reason) for u in updates] == expected
    assert all(u.state == ("delivered" if u.outcome == "delivered" else "failed") for u in updates)
    assert all(u.delivery_key == "inc-1:sms:p-1" for u in updates)


def test_without_a_delivery_id_the_sid_still_identifies_the_message() -> None:
    url = "https://breach.example/receipts/twilio"
    signature = twilio_signature("tok", url, FIELDS)
    [update] = _run(handle(_request(FIELDS, signature, {"TWILIO_AUTH_TOKEN": "tok"}, url=url)))
    assert (update.delivery_key, update.provider_id) == (None, FIELDS["MessageSid"])


def test_a_re_encoded_query_still_matches_the_signed_url() -> None:
    # Twilio signs the URL the notifier wrote; a proxy or framework may hand the handler the
    # same URL with its query percent-encoded differently.
    written = breach_twilio.TwilioSms({}).status_callback(
        make_message("sms", delivery_id="inc-1:sms:p/1", status_callback="https://b.example/r")
    )
    assert written == "https://b.example/r?delivery_id=inc-1:sms:p/1"
    received = "https://b.example/r?delivery_id=inc-1%3Asms%3Ap%2F1"
    signature = twilio_signature("tok", written or "", FIELDS)
    [update] = _run(handle(_request(FIELDS, signature, {"TWILIO_AUTH_TOKEN": "tok"}, received)))
    assert update.delivery_key == "inc-1:sms:p/1"
