"""SendGrid Event Webhook: the simulator posts events, a small receiver feeds the real handler."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import breach_sendgrid
import pytest
from aiohttp import web
from breach_sendgrid import SendGridEmail
from breach_sendgrid.receipts import SIGNATURE_HEADER, TIMESTAMP_HEADER, handle
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from factories import make_message, make_notice, make_recipient

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Outcome, Receipt
from orchestrator.receipts import (
    ReceiptHandler,
    ReceiptOutcome,
    ReceiptRejected,
    ReceiptRequest,
    ReceiptUpdate,
)
from orchestrator.simulator import Simulator

T = TypeVar("T")
NOW = datetime(2025, 3, 15, 8, 0, tzinfo=UTC)
SECRET = "hook-secret-3f9a"


@dataclass
class Receiver:
    """A stand-in for the webhook server: what it mounts at /receipts/sendgrid, and what it got."""

    url: str
    updates: list[ReceiptUpdate] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    posts: list[ReceiptRequest] = field(default_factory=list)


@asynccontextmanager
async def receiver(settings: Mapping[str, str]) -> AsyncIterator[Receiver]:
    """Serve the ``sendgrid`` handler on 127.0.0.1 the way the server mounts it."""
    registered: dict[str, ReceiptHandler] = {}
    breach_sendgrid.register_receipts(register=registered.__setitem__)
    handler = registered["sendgrid"]

    async def receive(request: web.Request) -> web.Response:
        incoming = ReceiptRequest(
            url=str(request.url),
            method=request.method,
            headers=dict(request.headers),
            body=await request.read(),
            settings=settings,
        )
        got.posts.append(incoming)
        try:
            got.updates.extend(await handler(incoming))
        except ReceiptRejected as exc:
            got.rejected.append(str(exc))
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/receipts/sendgrid", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    got = Receiver(url=f"http://127.0.0.1:{runner.addresses[0][1]}/receipts/sendgrid")
    try:
        yield got
    finally:
        await runner.cleanup()


def _people() -> list[Message]:
    """Six people: the simulator bounces ``bounce*`` and drops ``drop*`` local parts."""
    notice = make_notice()
    locals_ = ["ana", "bounce.ben", "chen", "drop.dee", "eve", "fay"]
    return [
        make_message(
            "email",
            delivery_id=f"inc-7:email:{name}",
            notice=notice,
            recipient=make_recipient(id=name, email=f"{name}@example.org"),
        )
        for name in locals_
    ]


def _campaign(
    simulator: Simulator, settings: Mapping[str, str], callback: Callable[[str], str]
) -> tuple[Sequence[Receipt], Receiver]:
    """Send six e-mails through the simulator; its event webhook posts to ``callback(url)``,
    ``url`` being the receiver's."""

    async def run() -> tuple[Sequence[Receipt], Receiver]:
        async with receiver(settings) as got:
            simulator.configure("sendgrid", callback_url=callback(got.url))
            notifier = SendGridEmail(
                {
                    "SENDGRID_API_KEY": simulator.config.sendgrid_api_key,
                    "BREACH_EMAIL_FROM": "security@example-health.test",
                    "SENDGRID_API_BASE_URL": simulator.url,
                },
                clock=lambda: NOW,
            )
            receipts = await notifier.send(_people(), "live")
            await asyncio.to_thread(simulator.drain)
            return receipts, got

    return asyncio.run(run())


def _check_updates(receipts: Sequence[Receipt], updates: Sequence[ReceiptUpdate]) -> None:
    assert all(r.outcome is Outcome.SENT for r in receipts)
    message_id = receipts[0].provider_id
    by_key = {u.delivery_key: u for u in updates}
    assert len(by_key) == len(updates) == 6  # "processed" events change nothing
    for key, update in by_key.items():
        assert update.provider_id == message_id  # sg_message_id starts with X-Message-Id
        name = (key or "").rsplit(":", 1)[1]
        if name.startswith("bounce"):
            assert (update.outcome, update.state, update.event) == ("bounce", "failed", "bounce")
            assert update.reason == (
                "bounce: 550 5.1.1 The email account that you tried to reach does not exist."
            )
        elif name.startswith("drop"):
            assert (update.outcome, update.state, update.event, update.reason) == (
                ReceiptOutcome.BOUNCE,
                "failed",
                "dropped",
                "dropped: Bounced Address",
            )
        else:
            assert (update.outcome, update.state, update.event, update.reason) == (
                ReceiptOutcome.DELIVERED,
                "delivered",
                "delivered",
                None,
            )


def test_events_with_the_secret_in_the_query_become_updates(simulator: Simulator) -> None:
    receipts, got = _campaign(
        simulator, {"SENDGRID_WEBHOOK_SECRET": SECRET}, lambda url: f"{url}?token={SECRET}"
    )
    assert got.rejected == []
    assert [c.status for c in simulator.callbacks("sendgrid")] == [204, 204]
    _check_updates(receipts, got.updates)


def test_events_with_the_secret_as_basic_auth_become_updates(simulator: Simulator) -> None:
    receipts, got = _campaign(
        simulator,
        {"SENDGRID_WEBHOOK_SECRET": SECRET},
        lambda url: url.replace("http://", f"http://sendgrid:{SECRET}@"),
    )
    assert got.rejected == []
    assert all(p.headers["Authorization"].startswith("Basic ") for p in got.posts)
    _check_updates(receipts, got.updates)


def test_events_without_or_with_a_wrong_secret_are_refused(simulator: Simulator) -> None:
    for callback in (lambda url: url, lambda url: f"{url}?token=guess"):
        simulator.reset()
        receipts, got = _campaign(simulator, {"SENDGRID_WEBHOOK_SECRET": SECRET}, callback)
        assert all(r.outcome is Outcome.SENT for r in receipts)
        assert got.updates == []
        assert got.rejected == ["missing or wrong Event Webhook secret"] * 2
        assert [c.status for c in simulator.callbacks("sendgrid")] == [401, 401]


# -- the signed Event Webhook ---------------------------------------------------------------------


def _key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()  # as the SendGrid console shows it


def _signed(
    post: ReceiptRequest,
    private: ec.EllipticCurvePrivateKey,
    settings: Mapping[str, str],
    body: bytes | None = None,
) -> ReceiptRequest:
    """``post`` with SendGrid's signature headers (signed over ``post.body``) and ``body``."""
    timestamp = "1742025600"
    signature = private.sign(timestamp.encode() + post.body, ec.ECDSA(hashes.SHA256()))
    headers = {
        **post.headers,
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
    }
    return ReceiptRequest(
        url=post.url,
        method="POST",
        headers=headers,
        body=post.body if body is None else body,
        settings=settings,
    )


def _run(awaitable: Awaitable[T]) -> T:
    async def run() -> T:
        return await awaitable

    return asyncio.run(run())


def test_signed_events_are_verified_with_the_public_key(simulator: Simulator) -> None:
    private, public = _key_pair()
    settings = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public}
    receipts, got = _campaign(simulator, settings, lambda url: url)
    # the simulator does not sign: its posts are refused, then signed here and replayed
    assert got.updates == [] and len(got.posts) == 2
    assert all("missing X-Twilio-Email-Event-Webhook-Signature" in r for r in got.rejected)

    updates = [u for post in got.posts for u in _run(handle(_signed(post, private, settings)))]
    _check_updates(receipts, updates)

    post = got.posts[-1]
    tampered = post.body.replace(b'"bounce"', b'"delivered"')
    assert tampered != post.body
    other_private, _ = _key_pair()
    for forged in (
        _signed(post, private, settings, body=tampered),  # content changed after signing
        _signed(post, other_private, settings),  # signed by someone else
    ):
        with pytest.raises(ReceiptRejected, match="signature does not match"):
            _run(handle(forged))


def test_with_key_and_secret_both_checks_must_pass(simulator: Simulator) -> None:
    private, public = _key_pair()
    settings = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public, "SENDGRID_WEBHOOK_SECRET": SECRET}
    _, got = _campaign(simulator, settings, lambda url: f"{url}?token={SECRET}")
    missing = f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"
    assert got.rejected == [missing] * 2
    post = got.posts[-1]  # delivered and bounce events
    signed = _signed(post, private, settings)
    assert len(_run(handle(signed))) == 5  # both checks pass
    without_secret = ReceiptRequest(
        url=post.url.split("?")[0],
        method="POST",
        headers=signed.headers,
        body=signed.body,
        settings=settings,
    )
    with pytest.raises(ReceiptRejected, match="secret"):
        _run(handle(without_secret))


def _request(body: bytes, settings: Mapping[str, str], url: str = "") -> ReceiptRequest:
    return ReceiptRequest(
        url=url or f"https://breach.example/receipts/sendgrid?token={SECRET}",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=body,
        settings=settings,
    )


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "delivered"}', "[\udcff]".encode("utf-8", "surrogatepass")]
)
def test_a_body_that_is_not_an_event_array_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(ReceiptRejected) as caught:
        _run(handle(_request(body, {"SENDGRID_WEBHOOK_SECRET": SECRET})))
    assert caught.value.status == 400


def test_without_any_authentication_configured_nothing_is_trusted() -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        _run(handle(_request(b"[]", {})))


def test_an_unusable_public_key_is_a_configuration_error() -> None:
    request = ReceiptRequest(
        url="https://breach.example/receipts/sendgrid",
        method="POST",
        headers={SIGNATURE_HEADER: "c2ln", TIMESTAMP_HEADER: "1"},
        body=b"[]",
        settings={"SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"},
    )
    with pytest.raises(ConfigurationError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        _run(handle(request))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"event": "delivered", "delivery_id": "d-1", "sg_message_id": "abc.filter-1"},
         ("delivered", "d-1", "abc", None)),
        ({"event": "bounce", "type": "blocked", "delivery_id": "d-1",
          "reason": "550 5.7.1 <alex.smith@example.com>: rejected by policy"},
         ("bounce", "d-1", None, "blocked: 550 5.7.1 <a…@example.com>: rejected by policy")),
        ({"event": "dropped", "sg_message_id": "abc.x", "reason": "Unsubscribed Address"},
         ("bounce", None, "abc", "dropped: Unsubscribed Address")),
        ({"event": "bounce", "delivery_id": "d-1", "status": "5.0.0"},
         ("bounce", "d-1", None, "bounce: 5.0.0")),
        ({"event": "deferred", "delivery_id": "d-1"}, None),
        ({"event": "processed", "delivery_id": "d-1"}, None),
        ({"event": "open", "delivery_id": "d-1"}, None),
        ({"event": "delivered"}, None),  # nothing to find the delivery by
    ],
)  # fmt: skip
def test_event_mapping(
    event: dict[str, str], expected: tuple[str, str | None, str | None, str | None] | None
) -> None:
    body = json.dumps([event, "not an event"]).encode()
    updates = _run(handle(_request(body, {"SENDGRID_WEBHOOK_SECRET": SECRET})))
    got = [(u.outcome, u.delivery_key, u.provider_id, u.reason) for u in updates]
    assert got == ([expected] if expected else [])
