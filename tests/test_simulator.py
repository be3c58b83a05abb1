"""The provider simulator over real HTTP on 127.0.0.1: endpoints, faults, records, receipts."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from orchestrator.simulator import (
    ProviderConfig,
    Simulator,
    SimulatorConfig,
    serve,
    twilio_signature,
)
from orchestrator.simulator.callbacks import is_loopback_url
from orchestrator.simulator.page import mask

# -- helpers -----------------------------------------------------------------------------------


def client(sim: Simulator, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=sim.url, timeout=timeout)


def twilio_path(sim: Simulator, resource: str = "Messages") -> str:
    return f"/2010-04-01/Accounts/{sim.config.twilio_account_sid}/{resource}.json"


def twilio_auth(sim: Simulator) -> tuple[str, str]:
    return sim.config.twilio_account_sid, sim.config.twilio_auth_token


def send_sms(sim: Simulator, http: httpx.Client, **fields: str) -> httpx.Response:
    data = {"To": "+15551230000", "From": "+15005550006", "Body": "Your data leaked.", **fields}
    data = {k: v for k, v in data.items() if v != ""}
    return http.post(twilio_path(sim), data=data, auth=twilio_auth(sim))


def sendgrid_headers(sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.config.sendgrid_api_key}"}


def mail(n: int = 1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [
            {"to": [{"email": f"person{i}@example.org"}], "custom_args": {"delivery_id": f"d-{i}"}}
            for i in range(n)
        ],
        "from": {"email": "security@acme.example", "name": "Acme Security"},
        "subject": "About your data",
        "content": [{"type": "text/plain", "value": "Your data leaked."}],
    }
    body.update(extra)
    return body


def fcm_headers(sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.config.fcm_access_token}"}


FCM_PATH = "/v1/projects/acme-prod/messages:send"


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- generic stand-in --------------------------------------------------------------------------


def test_standin_accepts_one_message_and_records_its_delivery_id(simulator: Simulator) -> None:
    with client(simulator) as http:
        r = http.post("/standin/messages", json={"to": "+4412", "body": "hi", "delivery_id": "d1"})
    assert r.status_code == 201
    assert r.json()["id"].startswith("sim_")
    [message] = simulator.accepted("standin")
    assert (message.recipient, message.delivery_id, message.body) == ("+4412", "d1", "hi")
    assert message.message_id == r.json()["id"]
    [record] = simulator.requests("standin")
    assert record.outcome == "accepted" and record.status == 201
    assert record.body == {"to": "+4412", "body": "hi", "delivery_id": "d1"}
    assert record.message_ids == (message.message_id,)


def test_standin_batch_answers_per_item(simulator: Simulator) -> None:
    batch = [
        {"to": "a", "body": "x", "delivery_id": "d1"},
        {"to": "invalid-b", "body": "x"},
        {"body": "no recipient"},
        {"to": "c", "body": "x", "delivery_id": "d3"},
    ]
    with client(simulator) as http:
        r = http.post("/standin/messages", json=batch)
    assert r.status_code == 207
    results = r.json()
    assert [item["status"] for item in results] == [201, 400, 400, 201]
    assert [item["index"] for item in results] == [0, 1, 2, 3]
    assert results[2]["field"] == "to"
    assert [m.delivery_id for m in simulator.accepted("standin")] == ["d1", "d3"]
    assert simulator.requests("standin")[0].outcome == "partial"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"body": "x"}, 400),
        ({"to": "a"}, 400),
        ({"to": "a", "body": "x", "delivery_id": 7}, 400),
        ([], 400),
        ("not json", 400),
        ([{"to": "a", "body": "x"}], 201),
    ],
)
def test_standin_validation(simulator: Simulator, payload: Any, status: int) -> None:
    with client(simulator) as http:
        if isinstance(payload, str):
            r = http.post("/standin/messages", content=payload)
        else:
            r = http.post("/standin/messages", json=payload)
    assert r.status_code == status


def test_standin_token_is_enforced_when_configured() -> None:
    with Simulator(SimulatorConfig(standin_token="s3cret")) as sim, client(sim) as http:
        message = {"to": "a", "body": "x"}
        assert http.post("/standin/messages", json=message).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert http.post("/standin/messages", json=message, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert http.post("/standin/messages", json=message, headers=right).status_code == 201
        recorded = [r.headers for r in sim.requests()]
        assert all("authorization" not in {k.lower() for k in h} for h in recorded)


# -- Twilio ------------------------------------------------------------------------------------


def test_twilio_refuses_wrong_credentials(simulator: Simulator) -> None:
    with client(simulator) as http:
        data = {"To": "+15551230000", "From": "+15005550006", "Body": "x"}
        bad = http.post(twilio_path(simulator), data=data, auth=(twilio_auth(simulator)[0], "no"))
        none = http.post(twilio_path(simulator), data=data)
    for r in (bad, none):
        assert r.status_code == 401
        assert r.json()["code"] == 20003
        assert r.json()["status"] == 401
        assert r.json()["more_info"] == "https://www.twilio.com/docs/errors/20003"
    assert simulator.stats()["twilio"]["outcomes"] == {"unauthorized": 2}
    assert simulator.accepted() == []


def test_twilio_refuses_another_account_in_the_path(simulator: Simulator) -> None:
    other = "/2010-04-01/Accounts/AC" + "9" * 32 + "/Messages.json"
    with client(simulator) as http:
        r = http.post(
            other, data={"To": "+1555", "From": "+1", "Body": "x"}, auth=twilio_auth(simulator)
        )
    assert r.status_code == 404
    assert r.json()["code"] == 20404


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"To": ""}, 21604),
        ({"From": ""}, 21603),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"To": "0044 20 7946 0000"}, 21211),
        # Twilio's documented magic numbers for test credentials
        ({"To": "+15005550001"}, 21211),
        ({"To": "+15005550002"}, 21612),
        ({"To": "+15005550003"}, 21408),
        ({"To": "+15005550004"}, 21610),
        ({"To": "+15005550009"}, 21614),
        ({"From": "+15005550001"}, 21212),
        ({"From": "+15005550007"}, 21606),
        ({"From": "+15005550008"}, 21611),
    ],
)
def test_twilio_message_errors(simulator: Simulator, fields: dict[str, str], code: int) -> None:
    with client(simulator) as http:
        r = send_sms(simulator, http, **fields)
    assert r.status_code == 400
    body = r.json()
    assert set(body) >= {"code", "message", "more_info", "status"}
    assert body["code"] == code
    assert body["status"] == 400
    assert body["more_info"].endswith(f"/errors/{code}")
    assert simulator.accepted() == []
    assert simulator.requests("twilio")[0].outcome == "rejected"


def test_twilio_message_created_like_twilio(simulator: Simulator) -> None:
    body = "Acme: your e-mail and password hash leaked on 3 May. Change your password. " * 3
    with client(simulator) as http:
        r = send_sms(simulator, http, Body=body, To="+447700900123")
    assert r.status_code == 201
    resource = r.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", resource["sid"])
    assert resource["status"] == "queued"
    assert resource["num_segments"] == "2"  # 228 GSM-7 characters
    assert resource["to"] == "+447700900123"
    assert resource["from"] == "+15005550006"
    assert resource["body"] == body
    assert resource["error_code"] is None
    assert resource["direction"] == "outbound-api"
    assert resource["account_sid"] == simulator.config.twilio_account_sid
    assert parsedate_to_datetime(resource["date_created"]).tzinfo is not None
    assert resource["uri"].endswith(f"/Messages/{resource['sid']}.json")
    [message] = simulator.accepted("twilio")
    assert message.channel == "sms"
    assert (message.recipient, message.body, message.message_id) == (
        "+447700900123",
        body,
        resource["sid"],
    )
    assert message.delivery_id is None
    assert message.key == f"+447700900123\n{body}"
    [record] = simulator.requests("twilio")
    assert record.body["To"] == "+447700900123"  # form fields recorded parsed


def test_twilio_messaging_service_message_is_accepted_not_queued(simulator: Simulator) -> None:
    with client(simulator) as http:
        r = send_sms(simulator, http, From="", MessagingServiceSid="MG" + "1" * 32, Body="日本語")
    assert r.status_code == 201
    assert r.json()["status"] == "accepted"
    assert r.json()["from"] is None
    assert r.json()["num_segments"] == "1"


def test_twilio_calls(simulator: Simulator) -> None:
    twiml = "<Response><Say>Your data leaked.</Say></Response>"
    with client(simulator) as http:
        calls = twilio_path(simulator, "Calls")
        auth = twilio_auth(simulator)
        ok = http.post(
            calls, data={"To": "+15551230000", "From": "+15005550006", "Twiml": twiml}, auth=auth
        )
        no_twiml = http.post(calls, data={"To": "+15551230000", "From": "+15005550006"}, auth=auth)
        magic = http.post(
            calls,
            data={"To": "+15005550001", "From": "+15005550006", "Url": "http://x/t"},
            auth=auth,
        )
        blocked = http.post(
            calls,
            data={"To": "+15005550004", "From": "+15005550006", "Url": "http://x/t"},
            auth=auth,
        )
    assert ok.status_code == 201
    assert re.fullmatch(r"CA[0-9a-f]{32}", ok.json()["sid"])
    assert ok.json()["status"] == "queued"
    assert no_twiml.status_code == 400 and no_twiml.json()["code"] == 21205
    assert magic.json()["code"] == 21217
    assert blocked.json()["code"] == 21216
    [call] = simulator.accepted("twilio")
    assert (call.channel, call.body) == ("call", twiml)


# -- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_auth(simulator: Simulator) -> None:
    with client(simulator) as http:
        missing = http.post("/v3/mail/send", json=mail())
        wrong = http.post("/v3/mail/send", json=mail(), headers={"Authorization": "Bearer SG.x"})
    assert missing.status_code == wrong.status_code == 401
    assert set(missing.json()["errors"][0]) == {"message", "field", "help"}
    assert "invalid, expired, or revoked" in wrong.json()["errors"][0]["message"]


def test_sendgrid_accepts_with_message_id_and_per_personalization_ids(simulator: Simulator) -> None:
    body = mail(3, custom_args={"incident": "inc-1", "delivery_id": "top-level"})
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json=body, headers=sendgrid_headers(simulator))
    assert r.status_code == 202
    assert r.content == b""
    message_id = r.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)
    accepted = simulator.accepted("sendgrid")
    # A personalization's custom_args override the message-wide ones, as SendGrid merges them.
    assert [(m.recipient, m.delivery_id) for m in accepted] == [
        ("person0@example.org", "d-0"),
        ("person1@example.org", "d-1"),
        ("person2@example.org", "d-2"),
    ]
    assert {m.message_id for m in accepted} == {message_id}
    assert {m.body for m in accepted} == {"About your data"}


def test_sendgrid_reports_every_missing_part(simulator: Simulator) -> None:
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json={"subject": "x"}, headers=sendgrid_headers(simulator))
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"from.email", "personalizations", "content"}
    assert all(e["help"].startswith("http") for e in r.json()["errors"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": None}, "subject"),
        ({"from": {"email": "not-an-address"}}, "from.email"),
        ({"personalizations": [{"to": []}]}, "personalizations.0.to"),
        ({"personalizations": [{"to": [{"email": "nobody"}]}]}, "personalizations.0.to.0.email"),
        (
            {
                "personalizations": [
                    {"to": [{"email": "a@b.org"}], "custom_args": {"delivery_id": 5}}
                ]
            },
            "personalizations.0.custom_args.delivery_id",
        ),
        (
            {"mail_settings": {"sandbox_mode": {"enable": "true"}}},
            "mail_settings.sandbox_mode.enable",
        ),
    ],
)
def test_sendgrid_validation(simulator: Simulator, change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**mail(), **change}.items() if v is not None}
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json=body, headers=sendgrid_headers(simulator))
    assert r.status_code == 400
    assert field in {e["field"] for e in r.json()["errors"]}


def test_sendgrid_limits_personalizations_and_recipients(simulator: Simulator) -> None:
    with client(simulator) as http:
        at_limit = http.post("/v3/mail/send", json=mail(1000), headers=sendgrid_headers(simulator))
        over = http.post("/v3/mail/send", json=mail(1001), headers=sendgrid_headers(simulator))
        too_many_cc = mail(1)
        too_many_cc["personalizations"][0]["cc"] = [
            {"email": f"cc{i}@example.org"} for i in range(1000)
        ]
        recipients = http.post(
            "/v3/mail/send", json=too_many_cc, headers=sendgrid_headers(simulator)
        )
    assert at_limit.status_code == 202
    assert len(simulator.accepted("sendgrid")) == 1000
    assert over.status_code == 400
    assert over.json()["errors"][0]["field"] == "personalizations"
    assert "1000" in over.json()["errors"][0]["message"]
    assert recipients.status_code == 400


def test_sendgrid_sandbox_validates_without_delivering(simulator: Simulator) -> None:
    body = mail(2, mail_settings={"sandbox_mode": {"enable": True}})
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json=body, headers=sendgrid_headers(simulator))
        bad = http.post(
            "/v3/mail/send",
            json={**body, "content": []},
            headers=sendgrid_headers(simulator),
        )
    assert r.status_code == 200
    assert simulator.accepted() == []
    assert simulator.requests("sendgrid")[0].outcome == "sandbox"
    assert bad.status_code == 400  # sandbox still validates


# -- FCM ---------------------------------------------------------------------------------------


def test_fcm_auth(simulator: Simulator) -> None:
    with client(simulator) as http:
        r = http.post(
            FCM_PATH, json={"message": {"token": "t"}}, headers={"Authorization": "Bearer x"}
        )
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_fcm_send_names_the_message_and_records_the_delivery_id(simulator: Simulator) -> None:
    message = {
        "token": "device-token-1234567890",
        "notification": {"title": "Security notice", "body": "Your data leaked."},
        "data": {"delivery_id": "d-42", "incident": "inc-1"},
    }
    with client(simulator) as http:
        r = http.post(FCM_PATH, json={"message": message}, headers=fcm_headers(simulator))
    assert r.status_code == 200
    assert re.fullmatch(r"projects/acme-prod/messages/0:\d+%[0-9a-f]{16}", r.json()["name"])
    [accepted] = simulator.accepted("fcm")
    assert (accepted.recipient, accepted.delivery_id, accepted.channel) == (
        "device-token-1234567890",
        "d-42",
        "push",
    )
    assert accepted.body == "Security notice\nYour data leaked."


def test_fcm_unregistered_and_invalid_tokens(simulator: Simulator) -> None:
    with client(simulator) as http:
        gone = http.post(
            FCM_PATH,
            json={"message": {"token": "unregistered-abc"}},
            headers=fcm_headers(simulator),
        )
        invalid = http.post(
            FCM_PATH, json={"message": {"token": "invalid-abc"}}, headers=fcm_headers(simulator)
        )
    assert gone.status_code == 404
    assert gone.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [
                {
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "UNREGISTERED",
                }
            ],
        }
    }
    assert invalid.status_code == 400
    assert invalid.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert invalid.json()["error"]["details"][0]["errorCode"] == "INVALID_ARGUMENT"
    assert simulator.accepted() == []


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"message": {}},
        {"message": {"token": "a", "topic": "b"}},
        {"message": {"token": "a", "data": {"n": 1}}},
        {"message": {"token": "a"}, "validate_only": "yes"},
    ],
)
def test_fcm_validation(simulator: Simulator, payload: dict[str, Any]) -> None:
    with client(simulator) as http:
        r = http.post(FCM_PATH, json=payload, headers=fcm_headers(simulator))
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_fcm_validate_only_delivers_nothing(simulator: Simulator) -> None:
    with client(simulator) as http:
        r = http.post(
            FCM_PATH,
            json={"message": {"topic": "breach-news"}, "validate_only": True},
            headers=fcm_headers(simulator),
        )
    assert r.json() == {"name": "projects/acme-prod/messages/fake_message_id"}
    assert simulator.accepted() == []
    assert simulator.stats()["fcm"]["outcomes"] == {"sandbox": 1}


# -- faults ------------------------------------------------------------------------------------


def _within(observed: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return abs(observed - n * p) <= spread


def test_fault_rates_hold_over_2000_requests(simulator: Simulator) -> None:
    simulator.configure(
        "standin", error_rate=0.2, throttle_rate=0.1, drop_rate=0.05, retry_after=3, seed=1234
    )
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    with client(simulator) as http:
        for i in range(2000):
            try:
                r = http.post(
                    "/standin/messages", json={"to": "a", "body": "x", "delivery_id": str(i)}
                )
            except httpx.TransportError:
                seen["dropped"] += 1
                continue
            statuses[r.status_code] += 1
            if r.status_code == 429:
                assert r.headers["Retry-After"] == "3"
                seen["throttled"] += 1
            elif r.status_code >= 500:
                seen["error"] += 1
            else:
                seen["accepted"] += 1
    assert _within(seen["error"], 2000, 0.2)
    assert _within(seen["throttled"], 2000, 0.1)
    assert _within(seen["dropped"], 2000, 0.05)
    assert {500, 502, 503} <= set(statuses)  # every configured 5xx shows up
    # What the client saw is exactly what the simulator counted.
    assert simulator.stats()["standin"]["outcomes"] == dict(seen)
    assert len(simulator.accepted("standin")) == seen["accepted"]


def test_same_seed_gives_the_same_fault_sequence(simulator: Simulator) -> None:
    def run() -> list[int]:
        simulator.configure("standin", error_rate=0.3, throttle_rate=0.2, seed=99)
        with client(simulator) as http:
            return [
                http.post("/standin/messages", json={"to": "a", "body": "x"}).status_code
                for _ in range(200)
            ]

    first = run()
    second = run()
    assert first == second
    assert len(set(first)) > 2
    simulator.configure("standin", seed=100)
    with client(simulator) as http:
        third = [
            http.post("/standin/messages", json={"to": "a", "body": "x"}).status_code
            for _ in range(200)
        ]
    assert third != first


def test_throttled_answers_are_provider_shaped(simulator: Simulator) -> None:
    for provider in ("twilio", "sendgrid", "fcm"):
        simulator.configure(provider, throttle_rate=1.0, retry_after=2.5)
    with client(simulator) as http:
        tw = send_sms(simulator, http)
        before = time.time()
        sg = http.post("/v3/mail/send", json=mail(), headers=sendgrid_headers(simulator))
        fcm = http.post(FCM_PATH, json={"message": {"token": "t"}}, headers=fcm_headers(simulator))
    for r in (tw, sg, fcm):
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"  # whole seconds, rounded up
    assert tw.json()["code"] == 20429
    assert sg.json()["errors"][0]["message"] == "too many requests"
    assert sg.headers["X-RateLimit-Remaining"] == "0"
    reset = int(sg.headers["X-RateLimit-Reset"])  # a Unix time, as SendGrid sends it
    assert before + 2 <= reset <= time.time() + 4
    assert fcm.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert fcm.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert simulator.accepted() == []


def test_server_errors_are_provider_shaped(simulator: Simulator) -> None:
    simulator.configure("twilio", error_rate=1.0, error_statuses=[503])
    simulator.configure("fcm", error_rate=1.0, error_statuses=(500,))
    simulator.configure("sendgrid", error_rate=1.0, error_statuses=(502,))
    with client(simulator) as http:
        tw = send_sms(simulator, http)
        fcm = http.post(FCM_PATH, json={"message": {"token": "t"}}, headers=fcm_headers(simulator))
        sg = http.post("/v3/mail/send", json=mail(), headers=sendgrid_headers(simulator))
    assert (tw.status_code, tw.json()["code"]) == (503, 20503)
    assert (fcm.status_code, fcm.json()["error"]["status"]) == (500, "INTERNAL")
    # A gateway's 502 is HTML: clients must cope with a body that is not the API's JSON.
    assert sg.status_code == 502
    assert sg.headers["Content-Type"].startswith("text/html")


def test_dropped_connection_is_a_connection_error(simulator: Simulator) -> None:
    simulator.configure("sendgrid", drop_rate=1.0)
    with client(simulator) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/v3/mail/send", json=mail(), headers=sendgrid_headers(simulator))
    [record] = simulator.requests("sendgrid")
    assert (record.outcome, record.status) == ("dropped", None)
    assert record.body["personalizations"][0]["to"][0]["email"] == "person0@example.org"
    assert simulator.accepted() == []


def test_timeout_holds_the_request_without_answering(simulator: Simulator) -> None:
    simulator.configure("fcm", timeout_rate=1.0, timeout_seconds=3)
    started = time.monotonic()
    with client(simulator, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post(FCM_PATH, json={"message": {"token": "t"}}, headers=fcm_headers(simulator))
    assert 0.25 < time.monotonic() - started < 2
    [record] = simulator.requests("fcm")
    assert (record.outcome, record.status) == ("timeout", None)
    assert simulator.accepted() == []


def test_lost_reply_delivers_but_does_not_answer(simulator: Simulator) -> None:
    simulator.configure("standin", lost_reply_rate=1.0)
    message = {"to": "a", "body": "x", "delivery_id": "d-1"}
    with client(simulator) as http:
        for _ in range(2):  # the client retries what it believes failed
            with pytest.raises(httpx.RemoteProtocolError):
                http.post("/standin/messages", json=message)
    assert [m.delivery_id for m in simulator.accepted("standin")] == ["d-1", "d-1"]
    stats = simulator.stats()["standin"]
    assert stats["outcomes"] == {"lost_reply": 2}
    assert stats["duplicates"] == 1


def test_latency_and_jitter(simulator: Simulator) -> None:
    simulator.configure("standin", latency=0.15, jitter=0.1)
    with client(simulator) as http:
        times = []
        for _ in range(5):
            started = time.monotonic()
            assert http.post("/standin/messages", json={"to": "a", "body": "x"}).status_code == 201
            times.append(time.monotonic() - started)
    assert min(times) >= 0.15
    assert max(times) < 0.6


def test_rate_limit_refuses_requests_above_the_limit(simulator: Simulator) -> None:
    simulator.configure("standin", rate_limit=10)
    with client(simulator) as http:
        started = time.monotonic()
        codes = [
            http.post("/standin/messages", json={"to": "a", "body": "x"}).status_code
            for _ in range(30)
        ]
        elapsed = time.monotonic() - started
        limited = [http.post("/standin/messages", json={"to": "a", "body": "x"}) for _ in range(5)]
        time.sleep(1.1)
        after_pause = http.post("/standin/messages", json={"to": "a", "body": "x"})
    assert elapsed < 1.0, "the burst must fit in one second for this test to mean anything"
    passed = codes.count(201)
    # A full bucket of 10, plus what refills while the burst is sent.
    assert 10 <= passed <= 10 + math.ceil(elapsed * 10)
    assert codes.count(429) == 30 - passed
    assert codes[:10] == [201] * 10
    retry = [r for r in limited if r.status_code == 429]
    assert retry and all(r.headers["Retry-After"] == "1" for r in retry)
    assert after_pause.status_code == 201
    assert simulator.stats()["standin"]["outcomes"]["rate_limited"] == 30 - passed + len(retry)


def test_configuration_errors_fail_loudly(simulator: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown fault setting"):
        simulator.configure("twilio", eror_rate=0.1)
    with pytest.raises(ValueError, match="must not exceed 1"):
        simulator.configure("twilio", error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        simulator.configure("twilio", throttle_rate=1.5)
    with pytest.raises(ValueError, match="5xx"):
        simulator.configure("twilio", error_statuses=(404,))
    with pytest.raises(ValueError, match="unknown provider"):
        simulator.configure("mailgun", error_rate=0.1)
    assert simulator.state.provider_config("twilio") == ProviderConfig()


def test_faults_over_the_control_api(simulator: Simulator) -> None:
    with client(simulator) as http:
        bad = http.post("/_sim/faults", json={"provider": "twilio", "eror_rate": 1})
        unknown = http.post("/_sim/faults", json={"mailgun": {"error_rate": 1}})
        ok = http.post(
            "/_sim/faults",
            json={"*": {"latency": 0.01}, "sendgrid": {"throttle_rate": 1.0, "retry_after": 7}},
        )
        one = http.post("/_sim/faults", json={"provider": "fcm", "error_rate": 0.5})
        current = http.get("/_sim/faults").json()
    assert bad.status_code == unknown.status_code == 400
    assert "eror_rate" in bad.json()["error"]
    assert ok.status_code == 200 and one.status_code == 200
    assert {p: current[p]["latency"] for p in current} == dict.fromkeys(current, 0.01)
    assert current["sendgrid"]["throttle_rate"] == 1.0
    assert current["fcm"]["error_rate"] == 0.5
    assert current["twilio"]["error_rate"] == 0.0
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json=mail(), headers=sendgrid_headers(simulator))
    assert r.headers["Retry-After"] == "7"


# -- records, stats, control API ---------------------------------------------------------------


def test_requests_are_recorded_without_authorization(simulator: Simulator) -> None:
    with client(simulator) as http:
        send_sms(simulator, http)
        http.post("/v3/mail/send", json=mail(), headers=sendgrid_headers(simulator))
        http.post(FCM_PATH, json={"message": {"token": "t"}}, headers=fcm_headers(simulator))
    records = simulator.requests()
    assert [r.provider for r in records] == ["twilio", "sendgrid", "fcm"]
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert records[0].received_monotonic <= records[1].received_monotonic
    assert records[0].received_at <= records[2].received_at
    for r in records:
        assert r.method == "POST"
        assert "authorization" not in {k.lower() for k in r.headers}
        assert r.headers.get("Content-Type") or r.headers.get("content-type")
    assert records[1].body["from"]["email"] == "security@acme.example"
    assert records[2].path == FCM_PATH


def test_duplicates_are_counted_per_provider(simulator: Simulator) -> None:
    with client(simulator) as http:
        for _ in range(3):
            http.post("/standin/messages", json={"to": "a", "body": "x", "delivery_id": "same"})
        for _ in range(2):
            send_sms(simulator, http, Body="identical")
        send_sms(simulator, http, Body="different")
    stats = simulator.stats()
    assert stats["standin"]["duplicates"] == 2
    assert stats["twilio"]["duplicates"] == 1  # To + Body identify a Twilio message
    assert stats["twilio"]["accepted_messages"] == 3


def test_control_api_reads_and_resets(simulator: Simulator) -> None:
    simulator.configure("twilio", error_rate=1.0)
    with client(simulator) as http:
        send_sms(simulator, http)
        http.post("/standin/messages", json={"to": "a", "body": "x", "delivery_id": "d"})
        only_twilio = http.get("/_sim/requests", params={"provider": "twilio"}).json()
        last = http.get("/_sim/requests", params={"limit": "1"}).json()
        accepted = http.get("/_sim/accepted").json()
        stats = http.get("/_sim/stats").json()
        wrong = http.get("/_sim/requests", params={"provider": "nope"})
        assert http.post("/_sim/reset").status_code == 200
        after = http.get("/_sim/stats").json()
    assert [r["provider"] for r in only_twilio] == ["twilio"]
    assert only_twilio[0]["outcome"] == "error"
    assert [r["provider"] for r in last] == ["standin"]
    assert [a["delivery_id"] for a in accepted] == ["d"]
    assert stats["twilio"]["outcomes"] == {"error": 1}
    assert wrong.status_code == 400
    assert all(s["requests"] == 0 for s in after.values())
    assert simulator.requests() == []
    assert simulator.state.provider_config("twilio").error_rate == 0.0  # settings restored


def test_page_lists_requests_with_masked_recipients(simulator: Simulator) -> None:
    with client(simulator) as http:
        send_sms(simulator, http, To="+447700900123")
        http.post(
            "/v3/mail/send",
            json={**mail(), "personalizations": [{"to": [{"email": "jane.doe@example.org"}]}]},
            headers=sendgrid_headers(simulator),
        )
        page = http.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    text = page.text
    for title in ("Twilio", "SendGrid", "Firebase Cloud Messaging", "Stand-in"):
        assert title in text
    assert "+447700900123" not in text
    assert "jane.doe" not in text
    assert mask("+447700900123") in text
    assert "j•••@example.org" in text
    assert "Nothing received yet." in text  # FCM and the stand-in got nothing


def test_mask() -> None:
    assert mask("+447700900123") == "+44" + "•" * 8 + "23"
    assert mask("jane@example.org") == "j•••@example.org"
    assert mask("topic:breach-news") == "topic:breach-news"
    assert "123456789" not in mask("fcm-token-123456789")


# -- receipts ----------------------------------------------------------------------------------


def test_twilio_status_callbacks_are_signed_like_twilio(simulator: Simulator) -> None:
    callback = simulator.sink_url("twilio") + "?delivery_id=d-7&attempt=1"
    with client(simulator) as http:
        r = send_sms(simulator, http, StatusCallback=callback, To="+15551239999")
    sid = r.json()["sid"]
    simulator.drain()
    received = simulator.sink("twilio")
    assert [s.form["MessageStatus"] for s in received if s.form] == ["sent", "delivered"]
    validator = RequestValidator(simulator.config.twilio_auth_token)
    for s in received:
        assert s.form is not None
        assert s.form["MessageSid"] == sid
        assert s.form["To"] == "+15551239999"
        assert s.form["From"] == "+15005550006"
        assert s.form["AccountSid"] == simulator.config.twilio_account_sid
        assert "ErrorCode" not in s.form
        assert validator.validate(callback, s.form, s.headers["X-Twilio-Signature"])
        assert not validator.validate(
            callback, {**s.form, "To": "+1"}, s.headers["X-Twilio-Signature"]
        )
    [message] = simulator.accepted("twilio")
    assert message.delivery_id == "d-7"  # carried in the callback URL
    assert simulator.stats()["twilio"]["callbacks"] == {"sent": 2, "failed": 0}


def test_twilio_signature_matches_the_sdk() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+1", "B": "ü"}
    url = "https://example.com/cb?x=1"
    expected = RequestValidator("token").compute_signature(url, params)
    assert twilio_signature("token", url, params) == expected


def test_twilio_failure_receipts(simulator: Simulator) -> None:
    simulator.configure("twilio", receipt_failure_rate=1.0, seed=3)
    with client(simulator) as http:
        for i in range(20):
            send_sms(simulator, http, StatusCallback=simulator.sink_url("tw"), Body=f"n{i}")
    simulator.drain()
    finals = [s.form for s in simulator.sink("tw") if s.form and s.form["MessageStatus"] != "sent"]
    assert len(finals) == 20
    assert {f["MessageStatus"] for f in finals} == {"failed", "undelivered"}
    assert all(f["ErrorCode"] in ("30003", "30008") for f in finals)


def test_twilio_call_callbacks_follow_status_callback_event(simulator: Simulator) -> None:
    with client(simulator) as http:
        http.post(
            twilio_path(simulator, "Calls"),
            data={
                "To": "+15551230000",
                "From": "+15005550006",
                "Url": "http://127.0.0.1:9/twiml",
                "StatusCallback": simulator.sink_url("call"),
                "StatusCallbackEvent": ["initiated", "answered"],
            },
            auth=twilio_auth(simulator),
        )
    simulator.drain()
    statuses = [s.form["CallStatus"] for s in simulator.sink("call") if s.form]
    assert statuses == ["initiated", "answered", "completed"]


def test_sendgrid_event_webhook(simulator: Simulator) -> None:
    simulator.configure("sendgrid", callback_url=simulator.sink_url("sg"))
    body = mail(2, categories=["breach"])
    body["personalizations"].append(
        {"to": [{"email": "bounce.me@example.org"}], "custom_args": {"delivery_id": "d-b"}}
    )
    with client(simulator) as http:
        r = http.post("/v3/mail/send", json=body, headers=sendgrid_headers(simulator))
    message_id = r.headers["X-Message-Id"]
    simulator.drain()
    posts = simulator.sink("sg")
    assert [p.headers["Content-Type"] for p in posts] == ["application/json"] * 2
    events = [e for p in posts for e in p.json]
    by_kind = Counter(e["event"] for e in events)
    assert by_kind == {"processed": 3, "delivered": 2, "bounce": 1}
    for e in events:
        assert e["sg_message_id"].startswith(message_id + ".")
        assert isinstance(e["timestamp"], int)
        assert e["category"] == ["breach"]
    bounce = next(e for e in events if e["event"] == "bounce")
    assert (bounce["email"], bounce["delivery_id"]) == ("bounce.me@example.org", "d-b")
    delivered = {e["delivery_id"] for e in events if e["event"] == "delivered"}
    assert delivered == {"d-0", "d-1"}


def test_sendgrid_sandbox_sends_no_events(simulator: Simulator) -> None:
    simulator.configure("sendgrid", callback_url=simulator.sink_url("sg"))
    with client(simulator) as http:
        http.post(
            "/v3/mail/send",
            json=mail(mail_settings={"sandbox_mode": {"enable": True}}),
            headers=sendgrid_headers(simulator),
        )
    simulator.drain()
    assert simulator.sink("sg") == []


def test_callbacks_never_delay_the_answer(simulator: Simulator) -> None:
    simulator.configure("standin", callback_url=simulator.sink_url("slow"), callback_delay=0.8)
    with client(simulator) as http:
        started = time.monotonic()
        r = http.post("/standin/messages", json={"to": "a", "body": "x", "delivery_id": "d"})
        answered = time.monotonic() - started
    assert r.status_code == 201
    assert answered < 0.5
    assert simulator.sink("slow") == []
    wait_for(lambda: len(simulator.sink("slow")) == 1)
    receipt = simulator.sink("slow")[0].json
    assert receipt == {"id": r.json()["id"], "delivery_id": "d", "to": "a", "status": "delivered"}


def test_failed_callback_is_recorded(simulator: Simulator) -> None:
    simulator.configure("standin", callback_url=simulator.sink_url("down") + "?status=503")
    with client(simulator) as http:
        http.post("/standin/messages", json={"to": "a", "body": "x"})
    simulator.drain()
    [record] = simulator.callbacks("standin")
    assert record.status == 503
    assert simulator.stats()["standin"]["callbacks"] == {"sent": 0, "failed": 1}


def test_callbacks_stay_on_this_machine(simulator: Simulator) -> None:
    # 0.0.0.0 is not a loopback address, so the simulator must refuse it; nothing is contacted.
    simulator.configure("standin", callback_url="http://0.0.0.0:9/receipts")
    with client(simulator) as http:
        http.post("/standin/messages", json={"to": "a", "body": "x"})
    simulator.drain()
    [record] = simulator.callbacks("standin")
    assert record.status is None
    assert record.error is not None and "loopback" in record.error


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("http://127.8.9.10/x", True),
        ("http://localhost/x", True),
        ("http://[::1]:80/x", True),
        ("http://0.0.0.0/x", False),
        ("http://10.0.0.1/x", False),
        ("https://example.com/x", False),
        ("not a url", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_simulator_restarts_and_keeps_its_records() -> None:
    sim = Simulator()
    with sim, client(sim) as http:
        http.post("/standin/messages", json={"to": "a", "body": "x"})
    with pytest.raises(RuntimeError):
        _ = sim.url
    with sim, client(sim) as http:
        http.post("/standin/messages", json={"to": "b", "body": "x"})
        assert [m.recipient for m in sim.accepted()] == ["a", "b"]


def test_stop_releases_held_requests_quickly() -> None:
    sim = Simulator().start()
    sim.configure("standin", timeout_rate=1.0, timeout_seconds=60)
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            httpx.post(sim.url + "/standin/messages", json={"to": "a", "body": "x"}, timeout=30)
        except httpx.TransportError as exc:
            errors.append(exc)

    thread = threading.Thread(target=hold)
    thread.start()
    wait_for(lambda: len(sim.requests()) == 1)
    started = time.monotonic()
    sim.stop()
    thread.join(timeout=10)
    assert time.monotonic() - started < 5
    assert len(errors) == 1  # the held client saw the connection close, not an answer


def test_concurrent_clients_are_all_recorded(simulator: Simulator) -> None:
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=simulator.url, limits=limits) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/standin/messages",
                        json={"to": f"+1555{i:07d}", "body": "x", "delivery_id": f"d-{i}"},
                    )
                    for i in range(500)
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [201] * 500
    records = simulator.requests("standin")
    assert len(records) == 500
    assert len({r.seq for r in records}) == 500
    assert {m.delivery_id for m in simulator.accepted()} == {f"d-{i}" for i in range(500)}
    assert simulator.stats()["standin"]["duplicates"] == 0


def test_serve_runs_until_cancelled() -> None:
    async def main() -> tuple[int, int]:
        bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        config = SimulatorConfig(providers={"standin": ProviderConfig(throttle_rate=1.0)})
        task = asyncio.create_task(serve("127.0.0.1", 0, config, ready=bound.set_result))
        url = await asyncio.wait_for(bound, 10)
        async with httpx.AsyncClient(base_url=url) as http:
            first = await http.post("/standin/messages", json={"to": "a", "body": "x"})
            stats = await http.get("/_sim/stats")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return first.status_code, stats.json()["standin"]["outcomes"]["throttled"]

    assert asyncio.run(main()) == (429, 1)


def test_config_from_dict() -> None:
    config = SimulatorConfig.from_dict(
        {
            "seed": 5,
            "twilio_auth_token": "t",
            "providers": {"twilio": {"error_rate": 0.1, "error_statuses": [503]}},
        }
    )
    assert config.seed == 5
    assert config.provider("twilio").error_statuses == (503,)
    assert config.provider("fcm") == ProviderConfig()
    with pytest.raises(ValueError, match="unknown simulator setting"):
        SimulatorConfig.from_dict({"sede": 1})
    with pytest.raises(ValueError, match="unknown provider"):
        SimulatorConfig.from_dict({"providers": {"mailgun": {}}})


def test_a_busy_port_fails_to_start(simulator: Simulator) -> None:
    port = int(simulator.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        Simulator(port=port).start()


def test_request_log_limit_keeps_the_newest_but_counts_all() -> None:
    with Simulator(SimulatorConfig(request_log_limit=3)) as sim, client(sim) as http:
        for i in range(5):
            http.post("/standin/messages", json={"to": "a", "body": "x", "delivery_id": str(i)})
        assert [r.body["delivery_id"] for r in sim.requests()] == ["2", "3", "4"]
        assert sim.stats()["standin"]["requests"] == 5
        assert len(sim.accepted()) == 5  # accepted messages are never dropped
