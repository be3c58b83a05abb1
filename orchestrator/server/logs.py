"""Request logging: one event per HTTP request, with fields, never secrets or personal data.

Request lines carry method, path (without query string), status, duration, client, and what the
server decided (hook, route, incident, outcome). Bodies and headers are never logged. Formatting,
masking of phone numbers and e-mail addresses, and redaction of registered secrets are
:mod:`orchestrator.logs`'s.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("orchestrator.server")


class RequestLog:
    """ASGI middleware: one log line per HTTP request, with what the handler recorded.

    Handlers add fields with ``note(request, outcome=..., route=...)``; the middleware adds
    method, path, status, duration and client.
    """

    def __init__(self, app: ASGIApp, *, behind_proxy: bool = False) -> None:
        self.app = app
        self.behind_proxy = behind_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})

        async def capture(message: Message) -> None:
            """Pass the message on, keeping the response status for the log line."""
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            fields = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "client": self._client(scope),
                **state.get("log", {}),
            }
            level = logging.WARNING if status >= 400 else logging.INFO
            log.log(level, "request", extra=fields)

    def _client(self, scope: Scope) -> str | None:
        if self.behind_proxy:
            for name, value in scope.get("headers", []):
                if name == b"x-forwarded-for":
                    return str(value.decode("latin-1").split(",")[0].strip())
        client = scope.get("client")
        return str(client[0]) if client else None
