"""A minimal provider endpoint for benchmarks: fixed answers over raw asyncio, tens of µs each.

The provider simulator (``orchestrator.simulator``) checks every request the way the provider
would, which costs far more per request than a provider's front door; a throughput benchmark
against it measures the simulator. This server only reads each HTTP/1.1 request (keep-alive,
``Content-Length`` bodies), counts the messages it carries and answers what the SDKs expect:

* Twilio ``POST .../Messages.json``: 201 and a message resource (one message).
* SendGrid ``POST /v3/mail/send``: 202 and ``X-Message-Id`` (one message per personalization).
* FCM ``POST /v1/projects/<p>/messages:send``: 200 and the message name (one message).
* ``GET /_stats``: the counts as JSON; ``POST /_reset``: counts back to zero.

No authentication, no validation: it is for measuring clients on 127.0.0.1, never for tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

_counts: Counter[str] = Counter()
_ids = itertools.count(1)

_TWILIO = (
    b'{"sid": "SM%032d", "status": "queued", "num_segments": "1", "error_code": null, '
    b'"error_message": null, "to": "+14155550100", "from": "+14155550199", "body": ""}'
)


def _response(status: str, body: bytes, extra: str = "", kind: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n")  # fmt: skip
    return head.encode("ascii") + body


def answer(method: bytes, path: bytes, body: bytes) -> bytes:
    """The canned answer to one request, counting the messages it carries."""
    if path.endswith(b"/Messages.json"):
        _counts["twilio"] += 1
        return _response("201 Created", _TWILIO % next(_ids))
    if path == b"/v3/mail/send":
        # each personalization is one message; its "to" key is the cheapest thing to count
        _counts["sendgrid"] += len(json.loads(body)["personalizations"])
        return _response("202 Accepted", b"", f"X-Message-Id: canned{next(_ids)}\r\n")
    if path.endswith(b"/messages:send"):
        _counts["fcm"] += 1
        return _response("200 OK", b'{"name": "projects/bench/messages/0:%d"}' % next(_ids))
    if path == b"/_stats":
        return _response("200 OK", json.dumps(dict(_counts)).encode())
    if path == b"/_reset" and method == b"POST":
        _counts.clear()
        return _response("200 OK", b"{}")
    return _response("404 Not Found", b"{}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: complete requests are answered in arrival order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                break
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            out.append(answer(method, path.split(b"?", 1)[0], body))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(ready: Callable[[str], Any]) -> None:
    """Listen on a free port of 127.0.0.1, call ``ready(url)``, serve until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    ready(f"http://127.0.0.1:{port}")
    async with server:
        await server.serve_forever()


def run(queue: Any) -> None:  # pragma: no cover - runs in its own process
    """Process entry point: the URL goes to ``queue`` once the server listens."""
    asyncio.run(serve(queue.put))
