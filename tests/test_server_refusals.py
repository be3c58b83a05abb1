"""Every refusal of `breach serve`, each on its own: the status, a problem body, and nothing
created in the ledger."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    GENERIC_ROUTE,
    PAYLOADS,
    LiveServer,
    alertmanager_payload,
    bearer,
    incidents,
    load,
    signed_headers,
    write_config,
)

CAP = 4096


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def server(tmp_path: Path, db: str) -> Iterator[LiveServer]:
    path = write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE)
    path.write_text(
        path.read_text().replace('outbox = "outbox"', f'outbox = "outbox"\nmax_body_bytes = {CAP}')
    )
    with LiveServer(load(path), db=db) as live:
        yield live


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:breach:problem:{slug}"
    assert body["detail"]
    return body


def alertmanager_body() -> bytes:
    return json.dumps(alertmanager_payload()).encode()


def generic_body(**changes: object) -> bytes:
    document = json.loads((PAYLOADS / "generic-dlp.json").read_text("utf-8"))
    document.update(changes)
    return json.dumps(document).encode()


# -- 401 ----------------------------------------------------------------------------------------


def test_alertmanager_without_credentials_is_401(server: LiveServer, db: str) -> None:
    response = httpx.post(
        f"{server.url}/hooks/alertmanager",
        content=alertmanager_body(),
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(response, 401, "unauthorized")
    assert "Authorization" in str(body["detail"])
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert incidents(db) == []


def test_alertmanager_with_wrong_token_is_401(server: LiveServer, db: str) -> None:
    response = httpx.post(
        f"{server.url}/hooks/alertmanager",
        content=alertmanager_body(),
        headers=bearer("not-the-token"),
    )
    assert_problem(response, 401, "unauthorized")
    assert incidents(db) == []


def test_generic_with_wrong_signature_is_401(server: LiveServer, db: str) -> None:
    body = generic_body()
    headers = signed_headers(body, secret="someone-elses-secret")
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert "does not match" in str(assert_problem(response, 401, "unauthorized")["detail"])
    assert incidents(db) == []


def test_generic_with_tampered_body_is_401(server: LiveServer, db: str) -> None:
    headers = signed_headers(generic_body())
    response = httpx.post(
        f"{server.url}/hooks/generic", headers=headers, content=generic_body(severity="low")
    )
    assert_problem(response, 401, "unauthorized")
    assert incidents(db) == []


def test_generic_without_signature_headers_is_401(server: LiveServer, db: str) -> None:
    response = httpx.post(
        f"{server.url}/hooks/generic",
        content=generic_body(),
        headers={"Content-Type": "application/json"},
    )
    detail = str(assert_problem(response, 401, "unauthorized")["detail"])
    assert "X-Breach-Timestamp" in detail and "X-Breach-Signature" in detail
    assert incidents(db) == []


def test_generic_with_stale_timestamp_is_401(server: LiveServer, db: str) -> None:
    body = generic_body()
    headers = signed_headers(body, timestamp=int(time.time()) - 301)
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert "old" in str(assert_problem(response, 401, "unauthorized")["detail"])
    assert incidents(db) == []


# -- 409 ----------------------------------------------------------------------------------------


def test_replayed_signature_is_409_and_changes_nothing(server: LiveServer, db: str) -> None:
    body = generic_body()
    headers = signed_headers(body)
    first = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert first.status_code == 201
    before = incidents(db)
    incident = first.json()["incident"]
    from orchestrator.session import Breach

    timeline = Breach(db).timeline(incident)
    replay = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert "already received" in str(assert_problem(replay, 409, "replay")["detail"])
    assert incidents(db) == before
    assert Breach(db).timeline(incident) == timeline


def test_a_refused_signed_request_can_be_retried(server: LiveServer, db: str) -> None:
    # a request that is not carried out does not burn its signature: the sender may retry it
    body = generic_body(scope={"records": "a few", "exfiltrated": True, "systems": []})
    headers = signed_headers(body)
    first = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert_problem(first, 400, "payload-does-not-fit")
    again = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert_problem(again, 400, "payload-does-not-fit")
    assert incidents(db) == []


# -- 400 ----------------------------------------------------------------------------------------


def test_malformed_json_is_400(server: LiveServer, db: str) -> None:
    response = httpx.post(
        f"{server.url}/hooks/alertmanager", content=b'{"version": "4",', headers=bearer()
    )
    detail = str(assert_problem(response, 400, "malformed-json")["detail"])
    assert "line 1" in detail
    assert incidents(db) == []


def test_malformed_signed_json_is_400(server: LiveServer, db: str) -> None:
    body = b'{"source": "dlp", }'
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=signed_headers(body))
    assert_problem(response, 400, "malformed-json")
    assert incidents(db) == []


def test_wrong_alertmanager_version_is_400(server: LiveServer, db: str) -> None:
    body = json.dumps(alertmanager_payload(version="3")).encode()
    response = httpx.post(f"{server.url}/hooks/alertmanager", content=body, headers=bearer())
    assert "version" in str(assert_problem(response, 400, "wrong-shape")["detail"])
    assert incidents(db) == []


def test_label_that_is_not_a_string_is_400(server: LiveServer, db: str) -> None:
    document = alertmanager_payload()
    document["alerts"][0]["labels"]["severity"] = 5
    del document["alerts"][0]["fingerprint"]
    response = httpx.post(
        f"{server.url}/hooks/alertmanager", content=json.dumps(document), headers=bearer()
    )
    detail = str(assert_problem(response, 400, "wrong-shape")["detail"])
    assert "alerts[0].labels.severity" in detail
    assert "alerts[0].fingerprint: required field is missing" in detail
    assert incidents(db) == []


def test_generic_array_is_400(server: LiveServer, db: str) -> None:
    body = b'[{"source": "dlp"}]'
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=signed_headers(body))
    assert "JSON object" in str(assert_problem(response, 400, "wrong-shape")["detail"])
    assert incidents(db) == []


def test_fact_that_does_not_convert_is_400(server: LiveServer, db: str) -> None:
    document = alertmanager_payload()
    document["alerts"][0]["annotations"]["affected_count"] = "twelve hundred"
    response = httpx.post(
        f"{server.url}/hooks/alertmanager", content=json.dumps(document), headers=bearer()
    )
    detail = str(assert_problem(response, 400, "payload-does-not-fit")["detail"])
    assert "affected_count" in detail and "annotations.affected_count" in detail
    assert incidents(db) == []


# -- 413 ----------------------------------------------------------------------------------------


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ", 2)[1]), rest


def test_declared_body_over_the_cap_is_413_before_it_is_sent(server: LiveServer, db: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /hooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + bearer()["Authorization"].split()[1].encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        # not one byte of the 10 MB body is sent: the answer comes anyway
        status, rest = _read_response(sock)
    assert status == 413
    assert b"payload-too-large" in rest
    assert incidents(db) == []


def test_streamed_body_over_the_cap_is_cut_off_while_reading(server: LiveServer, db: str) -> None:
    body = generic_body()
    headers = signed_headers(body)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 1024
        for _ in range(CAP // len(chunk) + 2):  # just over the cap, and the body never ends
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, rest = _read_response(sock)
    assert status == 413
    assert b"exceeds" in rest
    assert incidents(db) == []


def test_body_at_the_cap_is_read(server: LiveServer, db: str) -> None:
    body = generic_body()
    body = body[:-1] + b" " * (CAP - len(body)) + b"}"
    assert len(body) == CAP
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=signed_headers(body))
    assert response.status_code == 201
    assert len(incidents(db)) == 1


# -- 415, 404, 405 ------------------------------------------------------------------------------


def test_wrong_content_type_is_415(server: LiveServer, db: str) -> None:
    headers = {**bearer(), "Content-Type": "text/plain"}
    response = httpx.post(
        f"{server.url}/hooks/alertmanager", content=alertmanager_body(), headers=headers
    )
    assert "text/plain" in str(assert_problem(response, 415, "unsupported-media-type")["detail"])
    assert incidents(db) == []


def test_form_encoded_generic_webhook_is_415(server: LiveServer, db: str) -> None:
    body = b"source=dlp"
    headers = {**signed_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    response = httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)
    assert_problem(response, 415, "unsupported-media-type")
    assert incidents(db) == []


def test_unknown_path_and_wrong_method_are_problems(server: LiveServer, db: str) -> None:
    assert_problem(httpx.post(f"{server.url}/hooks/pagerduty", content=b"{}"), 404, "not-found")
    assert_problem(httpx.get(f"{server.url}/hooks/alertmanager"), 405, "method-not-allowed")
    assert incidents(db) == []
