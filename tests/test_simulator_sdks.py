"""The real provider SDKs against the simulator: proof that its answers have the right shape."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from collections.abc import Iterator
from typing import Any

import firebase_admin
import firebase_admin.exceptions
import google.oauth2.credentials
import pytest
from firebase_admin import messaging
from python_http_client.exceptions import (
    BadRequestsError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from orchestrator.simulator import Simulator

# -- Twilio ------------------------------------------------------------------------------------


@pytest.fixture
def twilio_client(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Client:
    # These rewrite host names (127.0.0.1 would become 127.ie1.0.1): never set in tests.
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    client = Client(simulator.config.twilio_account_sid, simulator.config.twilio_auth_token)
    client.api.base_url = simulator.url  # Messages and Calls live on api.twilio.com
    return client


def test_twilio_sdk_creates_messages_and_calls(simulator: Simulator, twilio_client: Client) -> None:
    callback = simulator.sink_url("sdk") + "?delivery_id=d-1"
    message = twilio_client.messages.create(
        to="+447700900123",
        from_="+15005550006",
        body="Acme: your password hash leaked. Reset it at acme.example/reset.",
        status_callback=callback,
    )
    assert message.sid is not None and message.sid.startswith("SM")
    assert message.status == "queued"
    assert message.num_segments == "1"
    assert message.error_code is None
    assert message.date_created is not None and message.date_created.tzinfo is not None

    call = twilio_client.calls.create(
        to="+447700900123",
        from_="+15005550006",
        twiml="<Response><Say>Your data leaked.</Say></Response>",
        status_callback=simulator.sink_url("sdk-call"),
        status_callback_event=["initiated", "completed"],
    )
    assert call.sid is not None and call.sid.startswith("CA")
    assert call.status == "queued"

    accepted = simulator.accepted("twilio")
    assert [(m.channel, m.message_id) for m in accepted] == [
        ("sms", message.sid),
        ("call", call.sid),
    ]
    assert accepted[0].delivery_id == "d-1"
    # The SDK repeats StatusCallbackEvent; the simulator honours every value.
    simulator.drain()
    assert [s.form["CallStatus"] for s in simulator.sink("sdk-call") if s.form] == [
        "initiated",
        "completed",
    ]
    validator = RequestValidator(simulator.config.twilio_auth_token)
    for receipt in simulator.sink("sdk"):
        assert receipt.form is not None
        assert validator.validate(callback, receipt.form, receipt.headers["X-Twilio-Signature"])


@pytest.mark.parametrize(
    ("to", "code"), [("+15005550001", 21211), ("+15005550004", 21610), ("+15005550009", 21614)]
)
def test_twilio_sdk_raises_with_the_error_code(twilio_client: Client, to: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages.create(to=to, from_="+15005550006", body="x")
    assert caught.value.code == code
    assert caught.value.status == 400
    assert caught.value.msg.startswith("Unable to create record: ")  # the API's message follows


def test_twilio_sdk_sees_429_as_20429(simulator: Simulator, twilio_client: Client) -> None:
    simulator.configure("twilio", throttle_rate=1.0)
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages.create(to="+15551230000", from_="+15005550006", body="x")
    assert (caught.value.status, caught.value.code) == (429, 20429)


def test_twilio_sdk_copes_with_an_html_502(simulator: Simulator, twilio_client: Client) -> None:
    simulator.configure("twilio", error_rate=1.0, error_statuses=(502,))
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages.create(to="+15551230000", from_="+15005550006", body="x")
    assert (caught.value.status, caught.value.code) == (502, 502)


def test_twilio_async_sdk(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)

    async def run() -> tuple[str | None, int]:
        http = AsyncTwilioHttpClient()
        client = Client(
            simulator.config.twilio_account_sid,
            simulator.config.twilio_auth_token,
            http_client=http,
        )
        client.api.base_url = simulator.url
        try:
            message = await client.messages.create_async(
                to="+15551230000", from_="+15005550006", body="async"
            )
            try:
                await client.messages.create_async(
                    to="+15005550001", from_="+15005550006", body="x"
                )
            except TwilioRestException as exc:
                return message.sid, int(exc.code or 0)
            return message.sid, 0
        finally:
            await http.close()

    sid, code = asyncio.run(run())
    assert sid is not None and sid.startswith("SM")
    assert code == 21211


# -- SendGrid ----------------------------------------------------------------------------------


def _mail(n: int) -> dict[str, Any]:
    return {
        "personalizations": [
            {
                "to": [{"email": f"p{i}@example.org"}],
                "subject": "About your data",
                "custom_args": {"delivery_id": f"d-{i}"},
            }
            for i in range(n)
        ],
        "from": {"email": "security@acme.example"},
        "content": [{"type": "text/plain", "value": "Your data leaked."}],
    }


def test_sendgrid_sdk_send(simulator: Simulator) -> None:
    sg = SendGridAPIClient(api_key=simulator.config.sendgrid_api_key, host=simulator.url)
    response = sg.send(_mail(3))
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    assert message_id
    assert [(m.delivery_id, m.message_id) for m in simulator.accepted("sendgrid")] == [
        ("d-0", message_id),
        ("d-1", message_id),
        ("d-2", message_id),
    ]


def test_sendgrid_sdk_mail_helper(simulator: Simulator) -> None:
    from sendgrid.helpers.mail import Mail

    message = Mail(
        from_email="security@acme.example",
        to_emails=["a@example.org", "b@example.org"],
        subject="About your data",
        plain_text_content="Your data leaked.",
        is_multiple=True,
    )
    sg = SendGridAPIClient(api_key=simulator.config.sendgrid_api_key, host=simulator.url)
    assert sg.send(message).status_code == 202
    # is_multiple builds one personalization per address, in reverse order.
    assert [m.recipient for m in simulator.accepted("sendgrid")] == [
        "b@example.org",
        "a@example.org",
    ]


def test_sendgrid_sdk_errors(simulator: Simulator) -> None:
    sg = SendGridAPIClient(api_key=simulator.config.sendgrid_api_key, host=simulator.url)
    with pytest.raises(BadRequestsError) as too_many:
        sg.send(_mail(1001))
    assert too_many.value.status_code == 400
    [error] = json.loads(too_many.value.body)["errors"]
    assert error["field"] == "personalizations"

    wrong = SendGridAPIClient(api_key="SG.wrong", host=simulator.url)
    with pytest.raises(UnauthorizedError):
        wrong.send(_mail(1))

    simulator.configure("sendgrid", throttle_rate=1.0, retry_after=4)
    with pytest.raises(TooManyRequestsError) as limited:
        sg.send(_mail(1))
    assert int(limited.value.headers["X-RateLimit-Reset"]) > 0
    assert limited.value.headers["Retry-After"] == "4"
    assert simulator.accepted() == []


def test_sendgrid_sdk_sandbox(simulator: Simulator) -> None:
    sg = SendGridAPIClient(api_key=simulator.config.sendgrid_api_key, host=simulator.url)
    body = {**_mail(2), "mail_settings": {"sandbox_mode": {"enable": True}}}
    assert sg.send(body).status_code == 200
    assert simulator.accepted() == []


# -- Firebase Cloud Messaging ------------------------------------------------------------------

_app_names = (f"simulator-{i}" for i in itertools.count())


@pytest.fixture
def fcm_app(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[firebase_admin.App]:
    # The SDK has no endpoint option: the URL is a class attribute, read when the messaging
    # service of an app is first created. monkeypatch restores it after the test.
    monkeypatch.setattr(
        messaging._MessagingService,
        "FCM_URL",
        simulator.url + "/v1/projects/{0}/messages:send",
    )
    token = simulator.config.fcm_access_token
    credentials = google.oauth2.credentials.Credentials(token=token)  # type: ignore[no-untyped-call]
    app = firebase_admin.initialize_app(
        credentials, {"projectId": "acme-prod"}, name=next(_app_names)
    )
    try:
        yield app
    finally:
        firebase_admin.delete_app(app)


@pytest.mark.skipif(
    "fid" not in inspect.signature(messaging.Message).parameters,
    reason="installation ids (fid) came with firebase-admin 7.7",
)
def test_fcm_sdk_send_each(simulator: Simulator, fcm_app: firebase_admin.App) -> None:
    with pytest.warns(DeprecationWarning, match="fid"):
        by_token = messaging.Message(
            token="device-token-1",
            data={"delivery_id": "d-1"},
            notification=messaging.Notification(title="Security notice", body="Your data leaked."),
        )
        gone = messaging.Message(token="unregistered-device-2", data={"delivery_id": "d-2"})
    by_fid = messaging.Message(fid="installation-3", data={"delivery_id": "d-3"})
    batch = messaging.send_each([by_token, gone, by_fid], app=fcm_app)

    assert (batch.success_count, batch.failure_count) == (2, 1)
    first, second, third = batch.responses
    assert first.success and first.message_id.startswith("projects/acme-prod/messages/")
    assert third.success
    assert isinstance(second.exception, messaging.UnregisteredError)
    assert second.exception.http_response.status_code == 404
    accepted = sorted((m.recipient, m.delivery_id) for m in simulator.accepted("fcm"))
    assert accepted == [("device-token-1", "d-1"), ("installation-3", "d-3")]


def test_fcm_sdk_dry_run(simulator: Simulator, fcm_app: firebase_admin.App) -> None:
    name = messaging.send(messaging.Message(topic="breach-news"), dry_run=True, app=fcm_app)
    assert name == "projects/acme-prod/messages/fake_message_id"
    assert simulator.accepted() == []


def test_fcm_sdk_quota_error_is_retried_by_the_sdk(
    simulator: Simulator, fcm_app: firebase_admin.App
) -> None:
    # The synchronous path (requests + urllib3 Retry) honours Retry-After on 429 and tries
    # 4 more times (here 1 s apart) before it reports the quota error: a caller's own
    # retries multiply these.
    simulator.configure("fcm", throttle_rate=1.0, retry_after=1)
    batch = messaging.send_each([messaging.Message(topic="breach-news")], app=fcm_app)
    assert isinstance(batch.responses[0].exception, messaging.QuotaExceededError)
    assert len(simulator.requests("fcm")) == 5


def test_fcm_sdk_reports_a_gateway_502_as_unknown(
    simulator: Simulator, fcm_app: firebase_admin.App
) -> None:
    simulator.configure("fcm", error_rate=1.0, error_statuses=(502,))
    batch = messaging.send_each([messaging.Message(topic="breach-news")], app=fcm_app)
    assert isinstance(batch.responses[0].exception, firebase_admin.exceptions.UnknownError)
    assert len(simulator.requests("fcm")) == 1  # 502 is not in the SDK's retry list
