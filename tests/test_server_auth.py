"""Webhook authentication: bearer and basic credentials, HMAC signatures, skew, replays, and
logs that never carry a secret or personal data."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    BASE,
    GENERIC_ROUTE,
    HERE,
    PAYLOADS,
    SECRET,
    TOKEN,
    alertmanager_payload,
    bearer,
    incidents,
    load,
    serving,
    signed_headers,
    write_config,
)

from orchestrator.server.auth import (
    ReplayCache,
    Replayed,
    Unauthorized,
    check_alertmanager,
    check_signature,
    sign,
)
from orchestrator.server.config import AlertmanagerCredentials, Secret

NOW = 1_767_254_400  # 2026-01-01T08:00:00Z
BODY = b'{"source": "dlp", "incident_ref": "DLP-1"}'


def headers_for(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "x-breach-timestamp": str(timestamp),
        "x-breach-signature": sign(secret.encode(), timestamp, body),
    }


# -- signatures ---------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1767254400." + BODY, hashlib.sha256).hexdigest()
    assert sign(b"k", NOW, BODY) == f"sha256={expected}"


def test_a_correct_signature_is_accepted() -> None:
    signature, timestamp = check_signature(headers_for(BODY, NOW), BODY, Secret(SECRET), now=NOW)
    assert timestamp == NOW
    assert f"sha256={signature}" == sign(SECRET.encode(), NOW, BODY)


@pytest.mark.parametrize("skew", [-299, 299])
def test_timestamps_within_five_minutes_are_accepted(skew: int) -> None:
    check_signature(headers_for(BODY, NOW + skew), BODY, Secret(SECRET), now=NOW)


@pytest.mark.parametrize(("skew", "word"), [(-301, "old"), (301, "in the future")])
def test_timestamps_beyond_five_minutes_are_refused(skew: int, word: str) -> None:
    with pytest.raises(Unauthorized, match=f"301 s {word}"):
        check_signature(headers_for(BODY, NOW + skew), BODY, Secret(SECRET), now=NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-breach-timestamp": str(NOW)}, "missing X-Breach-Signature"),
        (
            {
                "x-breach-timestamp": "2026-01-01T08:00:00Z",
                "x-breach-signature": "sha256=" + "0" * 64,
            },
            "Unix time",
        ),
        # superscript digits pass str.isdigit() but are no number int() reads
        ({"x-breach-timestamp": "¹²", "x-breach-signature": "sha256=" + "0" * 64}, "Unix time"),
        (
            {"x-breach-timestamp": "١٧٠٠٠٠٠٠٠٠", "x-breach-signature": "sha256=" + "0" * 64},
            "Unix time",
        ),
        ({"x-breach-timestamp": str(NOW), "x-breach-signature": "deadbeef"}, "sha256=<64 hex"),
        (
            {"x-breach-timestamp": str(NOW), "x-breach-signature": "sha256=" + "0" * 64},
            "does not match",
        ),
    ],
)
def test_bad_signature_headers_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        check_signature(headers, BODY, Secret(SECRET), now=NOW)


def test_a_signature_over_other_bytes_is_refused() -> None:
    headers = headers_for(BODY, NOW)
    # the same JSON with other whitespace is other bytes: senders sign exactly what they send
    with pytest.raises(Unauthorized, match="does not match"):
        check_signature(headers, BODY.replace(b": ", b":"), Secret(SECRET), now=NOW)


def test_replay_cache_refuses_a_signature_twice_within_the_window() -> None:
    cache = ReplayCache()
    cache.reserve("a" * 64, NOW, now=NOW)
    with pytest.raises(Replayed):
        cache.reserve("a" * 64, NOW, now=NOW + 299)
    cache.reserve("b" * 64, NOW, now=NOW)  # another signature is another request


def test_replay_cache_forgets_after_the_window_and_on_release() -> None:
    cache = ReplayCache()
    cache.reserve("a" * 64, NOW, now=NOW)
    cache.reserve("b" * 64, NOW, now=NOW)
    cache.release("b" * 64)
    cache.reserve("b" * 64, NOW, now=NOW + 1)
    # by then the timestamp itself is refused; the cache just must not grow without bound
    cache.reserve("c" * 64, NOW + 400, now=NOW + 400)
    assert len(cache) == 1


# -- Alertmanager credentials -----------------------------------------------------------------


def test_bearer_token_compared_exactly() -> None:
    creds = AlertmanagerCredentials(token=Secret("tok-123456"))
    assert check_alertmanager("Bearer tok-123456", creds) == "bearer"
    for header in ("Bearer tok-12345", "Bearer tok-1234567", "Bearer ", "tok-123456"):
        with pytest.raises(Unauthorized):
            check_alertmanager(header, creds)


def test_basic_credentials_need_both_parts_right() -> None:
    creds = AlertmanagerCredentials(username="alertmanager", password=Secret("pw-98765"))

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert check_alertmanager(basic("alertmanager", "pw-98765"), creds) == "basic"
    for header in (basic("alertmanager", "pw-9876"), basic("root", "pw-98765"), "Basic !!"):
        with pytest.raises(Unauthorized):
            check_alertmanager(header, creds)
    with pytest.raises(Unauthorized, match="accepts Basic"):
        check_alertmanager("Bearer pw-98765", creds)


def test_secret_repr_never_shows_the_value() -> None:
    secret = Secret("s3cr3t-value")
    assert "s3cr3t" not in repr(secret)
    assert "s3cr3t" not in repr(AlertmanagerCredentials(token=secret))


# -- over HTTP ------------------------------------------------------------------------------------


def test_basic_auth_from_environment_accepted_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_AM_PASSWORD", "pw-from-env-4321")
    text = write_config(tmp_path, ALERTMANAGER_ROUTE).read_text()
    token_line = f'token_file = "{HERE / "secrets" / "alertmanager-token"}"'
    text = text.replace(token_line, 'username = "am"\npassword_env = "TEST_AM_PASSWORD"')
    path = tmp_path / "basic.toml"
    path.write_text(text)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    body = json.dumps(alertmanager_payload())
    with serving(load(path), db) as server:
        url = f"{server.url}/hooks/alertmanager"
        wrong = httpx.post(
            url,
            content=body,
            auth=("am", "pw-from-env-432"),
            headers={"Content-Type": "application/json"},
        )
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Basic")
        assert incidents(db) == []
        right = httpx.post(
            url,
            content=body,
            auth=("am", "pw-from-env-4321"),
            headers={"Content-Type": "application/json"},
        )
        assert right.status_code == 201
        assert len(incidents(db)) == 1


def test_hook_without_configured_credentials_refuses_everything(tmp_path: Path) -> None:
    path = tmp_path / "no-auth.toml"
    path.write_text(
        BASE.split("[auth.alertmanager]")[0]
        + "[audiences.customers]\n"
        + BASE.split("[audiences.customers]")[1]
    )
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    body = (PAYLOADS / "generic-dlp.json").read_bytes()
    with serving(load(path), db) as server:
        response = httpx.post(
            f"{server.url}/hooks/generic", content=body, headers=signed_headers(body)
        )
        assert response.status_code == 401
        assert "no [auth.generic] secret" in response.json()["detail"]
        response = httpx.post(f"{server.url}/hooks/alertmanager", content=b"{}", headers=bearer())
        assert response.status_code == 401
    assert incidents(db) == []


def test_logs_carry_no_secret_and_no_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = load(write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE))
    document = alertmanager_payload()
    document["alerts"][0]["annotations"]["contact"] = "dpo.person@example.org +14155550101"
    am_body = json.dumps(document).encode()
    generic = json.loads((PAYLOADS / "generic-dlp.json").read_text())
    generic["reporter"] = "reporter.person@example.org"
    generic_body = json.dumps(generic).encode()
    caplog.set_level(logging.INFO)
    with serving(config, db) as server:
        hook = f"{server.url}/hooks"
        assert httpx.post(f"{hook}/alertmanager", content=am_body, headers=bearer()).is_success
        httpx.post(f"{hook}/alertmanager", content=am_body, headers=bearer(TOKEN + "x"))
        headers = signed_headers(generic_body)
        assert httpx.post(f"{hook}/generic", content=generic_body, headers=headers).is_success
        httpx.post(f"{hook}/generic", content=generic_body, headers=headers)  # replay
        stale = signed_headers(generic_body, timestamp=int(time.time()) - 900)
        httpx.post(f"{hook}/generic", content=generic_body, headers=stale)
    requests = [r for r in caplog.records if r.getMessage() == "request"]
    assert sorted(getattr(r, "status", 0) for r in requests) == [201, 201, 401, 401, 409]
    assert all(getattr(r, "hook", None) in ("alertmanager", "generic") for r in requests)
    dumped = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    for forbidden in (
        TOKEN,
        SECRET,
        headers["X-Breach-Signature"],
        "dpo.person",
        "reporter.person",
        "4155550101",
    ):
        assert forbidden not in dumped
