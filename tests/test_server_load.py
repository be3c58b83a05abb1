"""``breach serve`` under a burst of webhooks, and intake that is all or nothing.

The burst goes to a real server process on loopback, over real sockets, against SQLite and (when
BREACH_TEST_POSTGRES_URL is set) PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fixtures.server.harness import GENERIC_ROUTE, load, serving, signed_headers, write_config

from orchestrator import ledger as ledger_module
from orchestrator.session import Breach

HERE = Path(__file__).parent / "fixtures" / "server"
DISTINCT = 150
SHARED = 150


def payload(ref: str) -> bytes:
    scope = {"records": 3, "exfiltrated": True, "systems": "crm"}
    return json.dumps({"source": "dlp", "incident_ref": ref, "scope": scope}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def breach_serve(tmp_path: Path, db: str, server_settings: str = "") -> Iterator[str]:
    """`breach serve` (dry-run generic route, three people) on a free loopback port."""
    people = tmp_path / "three.csv"
    people.write_text("\n".join((HERE / "people.csv").read_text("utf-8").splitlines()[:4]) + "\n")
    config = write_config(tmp_path, GENERIC_ROUTE)
    text = config.read_text("utf-8").replace(str(HERE / "people.csv"), str(people))
    config.write_text(text.replace("[server]\n", "[server]\n" + server_settings, 1))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--config", str(config), "--port",
         str(port), "--db", db, "--no-engine", "--log-json"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)
        log.close()


@pytest.fixture
def server(tmp_path: Path, ledger_url: str) -> Iterator[str]:
    with breach_serve(tmp_path, ledger_url) as url:
        yield url


async def burst(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        # each request sharing a body is signed with its own timestamp (well inside the
        # 300-second window), so none is a replay of another
        stamp = int(time.time())
        return await asyncio.gather(*(
            client.post(f"{url}/hooks/generic", content=body,
                        headers=signed_headers(body, timestamp=stamp - i % DISTINCT))
            for i, body in enumerate(bodies)
        ))  # fmt: skip


@pytest.mark.slow
def test_a_burst_of_webhooks_opens_one_incident_per_key(server: str, ledger_url: str) -> None:
    bodies = [payload(f"DLP-{i}") for i in range(DISTINCT)] + [payload("DLP-SHARED")] * SHARED
    responses = asyncio.run(burst(server, bodies))

    codes = Counter(r.status_code for r in responses)
    assert all(code < 500 for code in codes), [r.text for r in responses if r.status_code >= 500]
    assert set(codes) == {200, 201}, [r.text for r in responses if r.status_code > 201][:3]
    created = [r.json()["incident"] for r in responses if r.status_code == 201]
    joined = [r.json()["incident"] for r in responses if r.status_code == 200]
    assert len(created) == DISTINCT + 1 and len(joined) == SHARED - 1

    with Breach(ledger_url) as breach:
        incidents = breach.incidents(limit=1000)
        assert sorted(i["id"] for i in incidents) == sorted(created)
        shared = {r.json()["incident"] for r in responses[DISTINCT:]}
        assert len(shared) == 1  # the 150 sharing a key all name one incident
        (shared_id,) = shared
        kinds = Counter(e["kind"] for e in breach.timeline(shared_id))
        assert kinds["alert.received"] == 1
        assert kinds["alert.repeated"] == SHARED - 1


def test_a_failure_while_opening_an_incident_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The incident, its steps and its first events are one transaction: if recording the alert
    that opened it fails, the request fails and the sender's retry starts afresh."""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    real = ledger_module._audit_row

    def failing(event: ledger_module.IncidentEvent) -> ledger_module.AuditEvent:
        if event.kind == "alert.received":
            raise ledger_module.LedgerError("the disk filled up while recording the alert")
        return real(event)

    body = payload("DLP-9")
    with serving(load(write_config(tmp_path, GENERIC_ROUTE)), db) as server:
        monkeypatch.setattr(ledger_module, "_audit_row", failing)
        refused = httpx.post(f"{server.url}/hooks/generic", content=body,
                             headers=signed_headers(body), timeout=30)  # fmt: skip
        assert refused.status_code == 503, refused.text
        assert server.breach.incidents() == []

        monkeypatch.setattr(ledger_module, "_audit_row", real)
        retry = httpx.post(f"{server.url}/hooks/generic", content=body,
                           headers=signed_headers(body, timestamp=int(time.time()) + 1),
                           timeout=30)  # fmt: skip
        assert retry.status_code == 201, retry.text
        (incident,) = server.breach.incidents()
        kinds = [e["kind"] for e in server.breach.timeline(incident["id"])]
        assert kinds[:2] == ["incident.triggered", "alert.received"]


def stalled_request(url: str, sent: int = 10, declared: int = 100) -> socket.socket:
    """A connection that sends its headers and the start of its body, then stalls."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % declared + b"{" * sent)  # fmt: skip
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: its head, then as many body bytes as it declares."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    while length and len(body) < int(length.group(1)):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_stalled_body_is_408_and_connections_are_limited(tmp_path: Path) -> None:
    settings = "body_timeout = 1\nmax_connections = 3\n"
    with breach_serve(tmp_path, f"sqlite:///{tmp_path / 'l.db'}", settings) as url:
        stalled = []
        for _ in range(4):  # one more than the server serves at once
            stalled.append(stalled_request(url))
            time.sleep(0.1)
        answers = [read_response(s) for s in stalled]
        for sock in stalled:
            sock.close()
        codes = [int(a.split(b" ", 2)[1]) for a in answers]
        assert 503 in codes, codes  # turned away at once: senders cannot hoard connections
        assert 408 in codes, codes  # the ones served were cut off when their second was up
        assert set(codes) == {408, 503}, codes
        assert b"did not arrive within 1 s" in answers[codes.index(408)]
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # free again
