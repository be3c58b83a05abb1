"""Live sending through the real Twilio SDK (async client) against the provider simulator."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from breach_twilio import TwilioCall, TwilioSms
from factories import make_message, make_notice, make_recipient

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Outcome, Receipt
from orchestrator.simulator import Simulator

FROM = "+15557650000"


@pytest.fixture
def settings(simulator: Simulator) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": simulator.config.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": simulator.config.twilio_auth_token,
        "TWILIO_FROM": FROM,
        "TWILIO_API_BASE_URL": simulator.url,
    }


def _send(
    notifier: TwilioSms | TwilioCall, batch: Sequence[Message], mode: Mode = "live"
) -> Sequence[Receipt]:
    async def run() -> Sequence[Receipt]:
        try:
            return await notifier.send(batch, mode)
        finally:
            await notifier.aclose()

    return asyncio.run(run())


def _sms(to: str = "+447700900123", delivery_id: str = "d-0001", **kw: Any) -> Message:
    return make_message("sms", delivery_id=delivery_id, address=to, **kw)


def _call(to: str = "+447700900123", delivery_id: str = "d-0001", **kw: Any) -> Message:
    return make_message("call", delivery_id=delivery_id, address=to, **kw)


def _as_recorded(form: Mapping[str, Any]) -> dict[str, Any]:
    return dict(form)  # the simulator keeps single values as strings, repeated ones as lists


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- success -------------------------------------------------------------------------------------


def test_sms_sends_exactly_the_payload_and_returns_the_sid(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = TwilioSms(settings)
    message = _sms(notice=make_notice("ja"), status_callback=simulator.sink_url("twilio"))
    payload = notifier.build_payload(message)

    [receipt] = _send(notifier, [message])

    [request] = simulator.requests("twilio")
    [accepted] = simulator.accepted("twilio")
    assert request.path == payload["path"]
    assert request.body == _as_recorded(payload["form"])
    assert request.body["StatusCallback"].endswith("/_sim/sink/twilio?delivery_id=d-0001")
    assert receipt == Receipt("d-0001", Outcome.SENT, provider_id=accepted.message_id)
    assert accepted.message_id.startswith("SM")
    assert accepted.delivery_id == "d-0001"  # read back from the callback URL
    assert accepted.body == message.notice.sms


def test_call_sends_the_twiml_and_every_status_event(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = TwilioCall(settings)
    message = _call(status_callback=simulator.sink_url("twilio-call"))
    payload = notifier.build_payload(message)

    [receipt] = _send(notifier, [message])

    [request] = simulator.requests("twilio")
    assert request.path == payload["path"]
    assert request.body == _as_recorded(payload["form"])
    assert request.body["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert receipt.outcome is Outcome.SENT
    assert receipt.provider_id == simulator.accepted("twilio")[0].message_id
    assert receipt.provider_id is not None and receipt.provider_id.startswith("CA")


def test_the_request_carries_the_sdk_headers_and_a_urlencoded_form(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    # the SDK's own http client is replaced by ours; what Twilio sees must not change
    _send(TwilioSms(settings), [_sms(notice=make_notice("ja"))])
    [request] = simulator.requests("twilio")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["user-agent"].startswith("twilio-python/")
    assert headers["accept"] == "application/json"
    assert simulator.accepted("twilio")  # the simulator checked the Basic credentials


@pytest.mark.parametrize(
    "form",
    [
        {"To": "+447700900123", "From": "+15557650000", "Body": "Réinitialisez: 50% & +1 = ?"},
        {
            "Body": "パスワードを変更してください\n~*'()!/:@",
            "StatusCallback": "http://h/r?a=1&b=%2F",
        },
        {"StatusCallback": "http://h/cb", "StatusCallbackEvent": ["initiated", "ringing"]},
        {"Twiml": '<Response><Say voice="Polly.Joanna">a b</Say></Response>', "Empty": ""},
    ],
)
def test_the_form_body_is_what_aiohttp_formdata_writes(form: dict[str, Any]) -> None:
    import aiohttp
    from breach_twilio.live import form_body

    for _ in range(2):  # the second time from the quoting cache
        assert form_body(form) == aiohttp.FormData(form)()._value


def test_messaging_service_replaces_the_sender(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    service = "MG" + "1" * 32
    [receipt] = _send(TwilioSms({**settings, "TWILIO_MESSAGING_SERVICE_SID": service}), [_sms()])
    [request] = simulator.requests("twilio")
    assert request.body["MessagingServiceSid"] == service
    assert "From" not in request.body
    assert receipt.outcome is Outcome.SENT


def test_a_batch_gets_one_receipt_per_message_in_order(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    batch = [
        _sms("+447700900001", "d-1"),
        _sms("+15005550004", "d-2"),  # opted out
        make_message("sms", delivery_id="d-3", recipient=make_recipient(phone=None)),
        _sms("+447700900004", "d-4", notice=make_notice(sms="x" * 1601)),
        _sms("+447700900005", "d-5"),
    ]
    receipts = _send(TwilioSms(settings), batch)
    assert [(r.delivery_id, r.outcome) for r in receipts] == [
        ("d-1", Outcome.SENT),
        ("d-2", Outcome.PERMANENT),
        ("d-3", Outcome.PERMANENT),
        ("d-4", Outcome.PERMANENT),
        ("d-5", Outcome.SENT),
    ]
    assert "no phone number" in (receipts[2].error or "")
    assert "1601 characters" in (receipts[3].error or "")
    # the two messages that could not be built never reached Twilio
    assert len(simulator.requests("twilio")) == 3
    assert [m.recipient for m in simulator.accepted("twilio")] == ["+447700900001", "+447700900005"]


def test_the_sdk_client_is_reused_and_closed(settings: dict[str, str]) -> None:
    notifier = TwilioSms(settings)

    async def run() -> None:
        await notifier.send([_sms(delivery_id="d-1")], "live")
        session = notifier._sessions["live"]
        await notifier.send([_sms(delivery_id="d-2")], "live")
        assert notifier._sessions["live"] is session
        await notifier.aclose()
        assert session.http.session.closed
        assert notifier._sessions == {}

    asyncio.run(run())


def test_a_second_event_loop_gets_a_new_client(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = TwilioSms(settings)
    first = asyncio.run(notifier.send([_sms(delivery_id="d-1")], "live"))
    second = _send(notifier, [_sms(delivery_id="d-2")])
    assert [r.outcome for r in (*first, *second)] == [Outcome.SENT, Outcome.SENT]
    assert len(simulator.accepted("twilio")) == 2


def test_the_endpoint_setting_wins_over_twilio_edge_and_region(
    simulator: Simulator, settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # these rewrite host names (127.0.0.1 would become 127.dublin.ie1.0.1)
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    [receipt] = _send(TwilioSms(settings), [_sms()])
    assert receipt.outcome is Outcome.SENT
    assert len(simulator.accepted("twilio")) == 1


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "code", "words"),
    [
        ("+15005550001", 21211, "invalid 'To' number"),
        ("+15005550002", 21612, "not reachable by SMS"),
        ("+15005550003", 21408, "region is not enabled"),
        ("+15005550004", 21610, "opted out"),
        ("+15005550009", 21614, "not a mobile number"),
        ("12345", 21211, "invalid 'To' number"),
    ],
)
def test_recipient_errors_are_permanent_with_the_code_and_no_full_number(
    simulator: Simulator, settings: dict[str, str], to: str, code: int, words: str
) -> None:
    [receipt] = _send(TwilioSms(settings), [_sms(to)])
    assert receipt.outcome is Outcome.PERMANENT
    assert receipt.error is not None
    assert f"twilio {code}" in receipt.error and words in receipt.error
    if len(to) > 8:
        assert to not in receipt.error and to[1:] not in receipt.error
    assert receipt.retry_after is None
    assert simulator.accepted() == []


@pytest.mark.parametrize(
    ("to", "code"),
    [("+15005550001", 21217), ("+15005550002", 21214), ("+15005550003", 21215)],
)
def test_call_recipient_errors_are_permanent(settings: dict[str, str], to: str, code: int) -> None:
    [receipt] = _send(TwilioCall(settings), [_call(to)])
    assert receipt.outcome is Outcome.PERMANENT
    assert f"twilio {code}" in (receipt.error or "")


@pytest.mark.parametrize(
    ("sender", "outcome", "code"),
    [("+15005550008", Outcome.TRANSIENT, 21611), ("+15005550001", Outcome.PERMANENT, 21212)],
)
def test_sender_errors(settings: dict[str, str], sender: str, outcome: Outcome, code: int) -> None:
    [receipt] = _send(TwilioSms({**settings, "TWILIO_FROM": sender}), [_sms()])
    assert (receipt.outcome, f"twilio {code}" in (receipt.error or "")) == (outcome, True)


def test_wrong_credentials_are_permanent_and_never_quoted(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    token = "wrong-token-5f2b9c"
    [receipt] = _send(TwilioSms({**settings, "TWILIO_AUTH_TOKEN": token}), [_sms()])
    assert receipt.outcome is Outcome.PERMANENT
    assert "twilio 20003" in (receipt.error or "") and "auth token" in (receipt.error or "")
    assert token not in (receipt.error or "")
    assert simulator.requests("twilio")[0].outcome == "unauthorized"


def test_throttling_is_transient_without_retry_after(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("twilio", throttle_rate=1.0, retry_after=3)
    [receipt] = _send(TwilioSms(settings), [_sms()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert "twilio 20429" in (receipt.error or "")
    # TwilioRestException keeps no response headers: the core's own backoff applies
    assert receipt.retry_after is None
    assert simulator.accepted() == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(
    simulator: Simulator, settings: dict[str, str], status: int
) -> None:
    simulator.configure("twilio", error_rate=1.0, error_statuses=(status,))
    [receipt] = _send(TwilioSms(settings), [_sms()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert str(status) in (receipt.error or "")
    assert "<html" not in (receipt.error or "")  # a gateway's HTML page is not a reason


@pytest.mark.parametrize("fault", ["drop_rate", "lost_reply_rate"])
def test_a_dropped_connection_is_transient(
    simulator: Simulator, settings: dict[str, str], fault: str
) -> None:
    simulator.configure("twilio", **{fault: 1.0})
    [receipt] = _send(TwilioSms(settings), [_sms()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert "connection failed" in (receipt.error or "")
    # a lost reply was processed: the retry the core makes is a bounded duplicate
    assert len(simulator.accepted("twilio")) == (1 if fault == "lost_reply_rate" else 0)
    # the request went out and the line went dead: from here the two look alike, and either
    # may have been accepted, so the ledger counts it among the possible duplicates
    assert receipt.uncertain


def test_a_timeout_is_transient_and_bounded_by_the_setting(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("twilio", timeout_rate=1.0, timeout_seconds=10)
    started = time.monotonic()
    [receipt] = _send(TwilioSms({**settings, "TWILIO_TIMEOUT": "0.3"}), [_sms()])
    assert time.monotonic() - started < 3
    assert receipt.outcome is Outcome.TRANSIENT
    assert receipt.error == "twilio: no answer within 0.3 s (TWILIO_TIMEOUT)"
    assert receipt.uncertain  # Twilio may have it although it did not answer in time


def test_connection_refused_is_transient(settings: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    [receipt] = _send(TwilioSms({**settings, "TWILIO_API_BASE_URL": url}), [_sms()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert "connection failed" in (receipt.error or "")
    assert not receipt.uncertain  # the request never left: no duplicate is possible


def test_a_name_that_does_not_resolve_never_sent_anything(settings: dict[str, str]) -> None:
    url = "http://twilio-api.invalid"
    [receipt] = _send(TwilioSms({**settings, "TWILIO_API_BASE_URL": url}), [_sms()])
    assert receipt.outcome is Outcome.TRANSIENT
    assert not receipt.uncertain


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_timeout_setting_is_a_configuration_error(
    settings: dict[str, str], value: str
) -> None:
    with pytest.raises(ConfigurationError, match="TWILIO_TIMEOUT"):
        _send(TwilioSms({**settings, "TWILIO_TIMEOUT": value}), [_sms()])


def test_missing_credentials_are_a_configuration_error_naming_them(
    settings: dict[str, str],
) -> None:
    del settings["TWILIO_AUTH_TOKEN"]
    with pytest.raises(ConfigurationError, match="TWILIO_AUTH_TOKEN"):
        _send(TwilioSms(settings), [_sms()])


# -- modes ---------------------------------------------------------------------------------------


def test_sandbox_sends_with_the_test_credentials_and_magic_sender(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    sandbox = {
        **settings,
        # the live account would be refused by the simulator: only the test one is valid there
        "TWILIO_ACCOUNT_SID": "AC" + "f" * 32,
        "TWILIO_AUTH_TOKEN": "live-token",
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32,
        "TWILIO_TEST_ACCOUNT_SID": simulator.config.twilio_account_sid,
        "TWILIO_TEST_AUTH_TOKEN": simulator.config.twilio_auth_token,
    }
    [receipt] = _send(TwilioSms(sandbox), [_sms()], mode="sandbox")
    assert receipt.outcome is Outcome.SENT
    [request] = simulator.requests("twilio")
    assert request.path == (
        f"/2010-04-01/Accounts/{simulator.config.twilio_account_sid}/Messages.json"
    )
    assert request.body["From"] == "+15005550006"
    assert "MessagingServiceSid" not in request.body


def test_sandbox_without_test_credentials_names_the_settings(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="TWILIO_TEST_ACCOUNT_SID and TWILIO_TEST_AUTH"):
        _send(TwilioSms(settings), [_sms()], mode="sandbox")


def test_dry_run_builds_and_sends_nothing(simulator: Simulator) -> None:
    receipts = _send(
        TwilioCall({}), [_call(delivery_id="d-1"), _call(delivery_id="d-2")], "dry-run"
    )
    assert [(r.delivery_id, r.outcome) for r in receipts] == [
        ("d-1", Outcome.SENT),
        ("d-2", Outcome.SENT),
    ]
    assert simulator.requests() == []


def test_no_secret_or_number_reaches_the_logs(
    simulator: Simulator, settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _send(TwilioSms(settings), [_sms("+447700900999"), _sms("+15005550001", "d-2")])
    assert settings["TWILIO_AUTH_TOKEN"] not in caplog.text
    assert "+447700900999" not in caplog.text and "+15005550001" not in caplog.text
    # the SDK's own request log still shows when its level is on, without the credentials
    assert "-- BEGIN Twilio API Request --" in caplog.text
    assert "authorization" not in caplog.text.lower()


def test_a_call_without_a_caller_id_is_a_configuration_error(settings: dict[str, str]) -> None:
    del settings["TWILIO_FROM"]
    with pytest.raises(ConfigurationError, match="TWILIO_FROM"):
        _send(TwilioCall({**settings, "TWILIO_MESSAGING_SERVICE_SID": "MG1"}), [_call()])


# -- a whole campaign's log ---------------------------------------------------------------------

CAMPAIGN = """\
id: log-check
title: Account credentials exposed
version: 1
severity: high
organisation:
  name: Northwind Accounts
  contact_email: privacy@northwind.example
notice:
  en:
    subject: Notice of data breach
    what_happened: A backup of our account database was reachable from the internet.
    impact: Someone may try to sign in to your account.
    measures: We closed the access and invalidated every session.
    advice: Choose a new password at https://northwind.example/reset.
    contact: privacy@northwind.example
    sms: "Northwind: your password may have been exposed. Reset it at https://northwind.example/reset"
steps:
  - id: notify
    channel: sms
    notifier: twilio-sms
    at: +0m
"""


def test_a_live_campaign_logs_no_sdk_request_dumps_unless_asked(
    simulator: Simulator, settings: dict[str, str], tmp_path: Path
) -> None:
    """``breach trigger --live`` then ``breach run --until-idle``, as a commander runs them:
    the Twilio SDK narrates each request at INFO (eleven lines, headers and URL), which must
    not reach a campaign's log unless ``--log-libraries`` asks for it."""
    playbook = tmp_path / "campaign.yaml"
    playbook.write_text(CAMPAIGN, encoding="utf-8")

    def campaign(people: int, *run_options: str) -> str:
        audience = tmp_path / f"people-{people}.csv"
        audience.write_text("id,phone\n" + "".join(
            f"p{i},+1415{2_000_000 + i}\n" for i in range(people)), encoding="utf-8")  # fmt: skip
        env = {**os.environ, **settings, "BREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"}
        for command in (["trigger", str(playbook), "--audience", str(audience), "--live"],
                        ["run", "--until-idle", *run_options]):  # fmt: skip
            done = subprocess.run([sys.executable, "-m", "orchestrator", *command], env=env,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    quiet = campaign(3)
    simulator.drain()
    assert len(simulator.accepted("twilio")) == 3, quiet
    assert "BEGIN Twilio API Request" not in quiet and "twilio.http_client" not in quiet
    assert "worker registered" in quiet and "run ended: sent 3" in quiet  # its own lines
    loud = campaign(2, "--log-libraries", "INFO")
    simulator.drain()
    assert len(simulator.accepted("twilio")) == 5
    assert loud.count("BEGIN Twilio API Request") == 2
    assert settings["TWILIO_AUTH_TOKEN"] not in loud
