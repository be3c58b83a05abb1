"""Live sending through the real SendGrid SDK against the provider simulator."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from breach_sendgrid import SendGridEmail
from breach_sendgrid.outcomes import classify_http_error, retry_after
from factories import make_incident, make_message, make_notice, make_recipient

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Outcome, Receipt
from orchestrator.simulator import Simulator

NOW = datetime(2025, 3, 15, 8, 0, tzinfo=UTC)


@pytest.fixture
def settings(simulator: Simulator) -> dict[str, str]:
    return {
        "SENDGRID_API_KEY": simulator.config.sendgrid_api_key,
        "BREACH_EMAIL_FROM": "Example Health Security <security@example-health.test>",
        "SENDGRID_API_BASE_URL": simulator.url,
    }


def _notifier(settings: dict[str, str], **more: str) -> SendGridEmail:
    return SendGridEmail({**settings, **more}, clock=lambda: NOW)


def _send(
    notifier: SendGridEmail, batch: Sequence[Message], mode: Mode = "live"
) -> Sequence[Receipt]:
    async def run() -> Sequence[Receipt]:
        try:
            return await notifier.send(batch, mode)
        finally:
            await notifier.aclose()

    return asyncio.run(run())


def _people(
    n: int, locale: str = "en", start: int = 0, domain: str = "example.org"
) -> list[Message]:
    notice = make_notice(locale)
    return [
        make_message(
            "email",
            delivery_id=f"d-{locale}-{i}",
            notice=notice,
            recipient=make_recipient(id=f"r{i}", email=f"p{i}@{domain}", name=f"Person {i}"),
        )
        for i in range(start, start + n)
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- success -------------------------------------------------------------------------------------


def test_a_batch_is_sent_as_the_builder_wrote_it(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    notifier = _notifier(settings)
    batch = _people(3)
    [expected] = notifier.build_batch_payload(batch)

    receipts = _send(notifier, batch)

    [request] = simulator.requests("sendgrid")
    assert request.path == "/v3/mail/send"
    assert request.body == expected
    assert request.body["mail_settings"] == {"sandbox_mode": {"enable": False}}
    message_id = simulator.accepted("sendgrid")[0].message_id
    assert receipts == [Receipt(m.delivery_id, Outcome.SENT, provider_id=message_id) for m in batch]
    assert [m.delivery_id for m in simulator.accepted("sendgrid")] == [m.delivery_id for m in batch]


def test_2500_messages_go_in_three_requests_of_at_most_1000(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    batch = _people(2500)
    receipts = _send(_notifier(settings), batch)

    requests = simulator.requests("sendgrid")
    assert [len(r.body["personalizations"]) for r in requests] == [1000, 1000, 500]
    assert [r.delivery_id for r in receipts] == [m.delivery_id for m in batch]
    assert all(r.outcome is Outcome.SENT for r in receipts)
    # each message carries the X-Message-Id of its own request
    id_of = {m.delivery_id: m.message_id for m in simulator.accepted("sendgrid")}
    assert len(id_of) == 2500
    assert all(r.provider_id == id_of[r.delivery_id] for r in receipts)
    assert len(set(id_of.values())) == 3


def test_each_layout_gets_its_own_request(simulator: Simulator, settings: dict[str, str]) -> None:
    batch = _people(2, "en") + _people(2, "ja")
    receipts = _send(_notifier(settings), batch)
    assert len(simulator.requests("sendgrid")) == 2
    assert [r.outcome for r in receipts] == [Outcome.SENT] * 4


def test_the_event_loop_is_never_blocked(simulator: Simulator, settings: dict[str, str]) -> None:
    simulator.configure("sendgrid", latency=0.4)
    notifier = _notifier(settings)

    async def run() -> tuple[int, Sequence[Receipt]]:
        ticks = 0
        done = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        receipts = await notifier.send(_people(2, "en") + _people(2, "ja"), "live")
        done.set()
        await ticker
        return ticks, receipts

    ticks, receipts = asyncio.run(run())
    assert [r.outcome for r in receipts] == [Outcome.SENT] * 4
    assert ticks >= 30  # two 0.4 s requests: the loop kept running all along


def test_batches_in_flight_are_not_capped_by_the_default_executor(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    """The engine sends up to --concurrency batches at once, and each SendGrid request blocks a
    thread: they have threads of their own, not the event loop's few shared ones."""
    from concurrent.futures import ThreadPoolExecutor

    simulator.configure("sendgrid", latency=1.0)
    notifier = _notifier(settings)
    batches = [_people(1, "en", start=i) for i in range(10)]

    async def run() -> list[Sequence[Receipt]]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        try:
            return await asyncio.gather(*(notifier.send(b, "live") for b in batches))
        finally:
            await notifier.aclose()

    receipts = asyncio.run(run())
    assert [r.outcome for batch in receipts for r in batch] == [Outcome.SENT] * 10
    arrived = sorted(r.received_monotonic for r in simulator.requests("sendgrid"))
    # each answer takes a second: all ten arrived before the first was answered
    assert len(arrived) == 10 and arrived[-1] - arrived[0] < 1.0, arrived


# -- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("incident_mode", ["live", "sandbox"])
def test_sandbox_mode_sets_the_flag_and_delivers_nothing(
    simulator: Simulator, settings: dict[str, str], incident_mode: str
) -> None:
    batch = [make_message("email", incident=make_incident(mode=incident_mode))]
    [receipt] = _send(_notifier(settings), batch, "sandbox")
    [request] = simulator.requests("sendgrid")
    assert request.body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert (request.status, request.outcome) == (200, "sandbox")
    assert receipt == Receipt("d-0001", Outcome.SENT)
    assert simulator.accepted() == []


def test_live_mode_clears_the_flag_whatever_the_incident_says(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    batch = [make_message("email", incident=make_incident(mode="sandbox"))]
    [receipt] = _send(_notifier(settings), batch, "live")
    assert simulator.requests("sendgrid")[0].body["mail_settings"]["sandbox_mode"] == {
        "enable": False
    }
    assert receipt.outcome is Outcome.SENT and receipt.provider_id


def test_dry_run_sends_nothing(simulator: Simulator) -> None:
    receipts = _send(_notifier({}), _people(3), "dry-run")
    assert [r.outcome for r in receipts] == [Outcome.SENT] * 3
    assert simulator.requests() == []


# -- errors --------------------------------------------------------------------------------------


def test_429_is_transient_with_the_delay_until_the_rate_limit_resets(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("sendgrid", throttle_rate=1.0, retry_after=4)
    batch = _people(2, "en") + _people(2, "ja")  # two requests
    receipts = _send(_notifier(settings), batch)
    assert len(receipts) == 4
    assert {r.outcome for r in receipts} == {Outcome.TRANSIENT}
    for r in receipts:
        assert r.retry_after is not None and 3.0 <= r.retry_after <= 5.0
    assert "sendgrid HTTP 429" in (receipts[0].error or "")
    # the rate limit is account-wide: the second request is not tried now
    assert len(simulator.requests("sendgrid")) == 1
    assert (receipts[2].error or "").startswith("not sent: an earlier request of this batch")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient_and_the_next_request_is_still_tried(
    simulator: Simulator, settings: dict[str, str], status: int
) -> None:
    simulator.configure("sendgrid", error_rate=1.0, error_statuses=(status,))
    receipts = _send(_notifier(settings), _people(2, "en") + _people(2, "ja"))
    assert [r.outcome for r in receipts] == [Outcome.TRANSIENT] * 4
    assert all(f"sendgrid HTTP {status}" in (r.error or "") for r in receipts)
    assert all(r.retry_after is None for r in receipts)
    assert len(simulator.requests("sendgrid")) == 2


def test_an_invalid_address_fails_alone_and_the_rest_is_sent(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    bad = make_message(
        "email", delivery_id="d-bad", recipient=make_recipient(id="bad", email="nobody@localhost")
    )
    batch = [*_people(2), bad]
    receipts = _send(_notifier(settings), batch)
    assert [(r.delivery_id, r.outcome) for r in receipts] == [
        ("d-en-0", Outcome.SENT),
        ("d-en-1", Outcome.SENT),
        ("d-bad", Outcome.PERMANENT),
    ]
    assert receipts[2].error == (
        "sendgrid HTTP 400: Does not contain a valid address. (personalizations.2.to.0.email)"
    )
    first, second = simulator.requests("sendgrid")
    assert (first.status, len(first.body["personalizations"])) == (400, 3)
    assert (second.status, len(second.body["personalizations"])) == (202, 2)
    assert sorted(m.delivery_id or "" for m in simulator.accepted("sendgrid")) == [
        "d-en-0",
        "d-en-1",
    ]


def test_a_request_level_400_is_permanent_for_everyone_with_sendgrids_message(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    receipts = _send(_notifier(settings, BREACH_EMAIL_FROM="not an address"), _people(2))
    assert [r.outcome for r in receipts] == [Outcome.PERMANENT] * 2
    assert "The from object must be provided" in (receipts[0].error or "")
    assert "(from.email)" in (receipts[0].error or "")
    assert len(simulator.requests("sendgrid")) == 1


def test_a_wrong_api_key_is_permanent_and_never_quoted(settings: dict[str, str]) -> None:
    key = "SG.wrong-key-7c1d"
    receipts = _send(_notifier(settings, SENDGRID_API_KEY=key), _people(2))
    assert [r.outcome for r in receipts] == [Outcome.PERMANENT] * 2
    assert "check SENDGRID_API_KEY" in (receipts[0].error or "")
    assert key not in (receipts[0].error or "")


@pytest.mark.parametrize("fault", ["drop_rate", "lost_reply_rate"])
def test_a_dropped_connection_is_transient_and_stops_the_batch(
    simulator: Simulator, settings: dict[str, str], fault: str
) -> None:
    simulator.configure("sendgrid", **{fault: 1.0})
    receipts = _send(_notifier(settings), _people(2, "en") + _people(2, "ja"))
    assert [r.outcome for r in receipts] == [Outcome.TRANSIENT] * 4
    assert "connection failed" in (receipts[0].error or "")
    assert len(simulator.requests("sendgrid")) == 1
    # the request went out whole and the answer was lost: SendGrid may have accepted it
    assert [r.uncertain for r in receipts] == [True, True, False, False]  # the second never went


def test_a_timeout_is_transient_and_bounded_by_the_setting(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("sendgrid", timeout_rate=1.0, timeout_seconds=10)
    started = time.monotonic()
    receipts = _send(_notifier(settings, SENDGRID_TIMEOUT="0.3"), _people(2))
    assert time.monotonic() - started < 3
    assert [r.error for r in receipts] == [
        "sendgrid: no answer within 0.3 s (SENDGRID_TIMEOUT)"
    ] * 2
    assert {r.outcome for r in receipts} == {Outcome.TRANSIENT}
    assert {r.uncertain for r in receipts} == {True}


def test_connection_refused_is_transient(settings: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    receipts = _send(_notifier(settings, SENDGRID_API_BASE_URL=url), _people(2))
    assert {r.outcome for r in receipts} == {Outcome.TRANSIENT}
    assert "ConnectionRefusedError" in (receipts[0].error or "")
    assert {r.uncertain for r in receipts} == {False}  # it never left: no duplicate possible


def test_an_unbuildable_message_is_permanent_and_the_others_go(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    nobody = make_message("email", delivery_id="d-none", recipient=make_recipient(email=None))
    batch = [*_people(2), nobody]
    receipts = _send(_notifier(settings), batch)
    assert [r.outcome for r in receipts] == [Outcome.SENT, Outcome.SENT, Outcome.PERMANENT]
    assert "no e-mail address" in (receipts[2].error or "")
    assert len(simulator.accepted("sendgrid")) == 2


def test_missing_settings_are_a_configuration_error(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        _send(SendGridEmail({"BREACH_EMAIL_FROM": "a@b.example"}), _people(1))
    with pytest.raises(ConfigurationError, match="SENDGRID_TIMEOUT"):
        _send(_notifier(settings, SENDGRID_TIMEOUT="-2"), _people(1))


# -- classification without the network ----------------------------------------------------------


def test_retry_after_reads_the_reset_time_then_retry_after() -> None:
    assert retry_after({"X-RateLimit-Reset": "1000", "Retry-After": "99"}, now=990.5) == 9.5
    assert retry_after({"X-RateLimit-Reset": "900"}, now=990.0) == 0.0  # already reset
    assert retry_after({"Retry-After": "7"}, now=0.0) == 7.0
    assert retry_after({"X-RateLimit-Reset": "soon"}, now=0.0) is None
    assert retry_after({}, now=0.0) is None


def test_413_and_other_4xx_are_permanent_with_the_message() -> None:
    body = json.dumps({"errors": [{"message": "too big", "field": None}]}).encode()
    answer = classify_http_error(413, body, {}, 0.0)
    assert (answer.outcome, answer.error) == (
        Outcome.PERMANENT,
        "sendgrid HTTP 413: request too large: too big",
    )
    assert classify_http_error(404, b"<html>", {}, 0.0).error == "sendgrid HTTP 404"


def test_addresses_in_error_messages_are_masked() -> None:
    body = json.dumps(
        {"errors": [{"message": "alex.smith@example.com is on a suppression list", "field": None}]}
    )
    answer = classify_http_error(400, body.encode(), {}, 0.0)
    assert "alex.smith@example.com" not in (answer.error or "")
    assert "a…@example.com" in (answer.error or "")


def test_every_message_of_a_batch_gets_exactly_one_receipt_under_random_faults(
    simulator: Simulator, settings: dict[str, str]
) -> None:
    simulator.configure("sendgrid", error_rate=0.3, drop_rate=0.1, seed=3)
    batch = _people(300, "en") + _people(300, "ja") + _people(300, "de")
    receipts = _send(_notifier(settings), batch)
    assert Counter(r.delivery_id for r in receipts) == Counter(m.delivery_id for m in batch)
    sent = {r.delivery_id for r in receipts if r.outcome is Outcome.SENT}
    assert sent == {m.delivery_id for m in simulator.accepted("sendgrid")}


def test_neither_the_api_key_nor_addresses_reach_the_logs(
    settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receipts = _send(_notifier(settings), _people(2, domain="secret-domain.test"))
    assert {r.outcome for r in receipts} == {Outcome.SENT}
    assert settings["SENDGRID_API_KEY"] not in caplog.text
    assert "secret-domain.test" not in caplog.text
