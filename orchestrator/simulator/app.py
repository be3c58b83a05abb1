"""The aiohttp application: provider routes behind one fault-injecting, recording pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from .base import Handled, Incoming, ProviderAPI
from .callbacks import CallbackDispatcher
from .config import SimulatorConfig
from .control import add_routes as add_control_routes
from .fcm_api import TOKEN_PATH, FcmAPI, grant_token
from .keys import CLOSING_KEY, DISPATCHER_KEY, STATE_KEY
from .page import add_routes as add_page_routes
from .sendgrid_api import SendGridAPI
from .standin_api import StandinAPI
from .state import RecordedRequest, SimState
from .twilio_api import TwilioAPI

__all__ = ["CLOSING_KEY", "DISPATCHER_KEY", "STATE_KEY", "create_app"]

_MAX_BODY = 32 * 1024 * 1024  # a full SendGrid batch with HTML bodies stays well below this


def create_app(
    config: SimulatorConfig | None = None, *, state: SimState | None = None
) -> web.Application:
    """Build the simulator's application (not started); its state is ``app[STATE_KEY]``.

    Pass ``state`` to keep what an earlier application recorded (a restarted simulator).
    """
    config = config or (state.config if state else SimulatorConfig())
    state = state or SimState(config)
    app = web.Application(client_max_size=_MAX_BODY)
    app[STATE_KEY] = state
    app[DISPATCHER_KEY] = CallbackDispatcher(state, allow_remote=config.allow_remote_callbacks)
    app[CLOSING_KEY] = asyncio.Event()
    apis: list[ProviderAPI] = [
        StandinAPI(config.standin_token),
        TwilioAPI(config.twilio_account_sid, config.twilio_auth_token),
        SendGridAPI(config.sendgrid_api_key),
        FcmAPI(config.fcm_access_token),
    ]
    for api in apis:
        handler = _pipeline(api)
        for method, path in api.routes():
            app.router.add_route(method, path, handler)
    app.router.add_route("POST", TOKEN_PATH, grant_token)  # not a provider request: no faults
    add_control_routes(app)
    add_page_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_shutdown(app: web.Application) -> None:
    app[CLOSING_KEY].set()
    await app[DISPATCHER_KEY].close()


def _headers_without_auth(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() != "authorization"}


def _hang_up(request: web.Request) -> None:
    """Close the connection without an answer: the client sees a reset, not a status."""
    if request.transport is not None:
        request.transport.abort()


def _pipeline(api: ProviderAPI) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        received_monotonic = time.monotonic()
        received_at = datetime.now(UTC)
        seq = state.next_seq()
        raw = await request.read()
        body = api.parse_body(raw, request.content_type)
        config, decision = state.decide(api.name, received_monotonic)

        def record(outcome: str, status: int | None, handled: Handled | None = None) -> None:
            accepted = handled.accepted if handled else []
            state.record(
                RecordedRequest(
                    seq=seq,
                    provider=api.name,
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers=_headers_without_auth(request),
                    body=body,
                    received_monotonic=received_monotonic,
                    received_at=received_at,
                    outcome=outcome,
                    status=status,
                    message_ids=tuple(dict.fromkeys(m.message_id for m in accepted)),
                ),
                accepted,
            )

        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.kind == "drop":
            record("dropped", None)
            _hang_up(request)
            return web.Response()
        if decision.kind == "timeout":
            # Recorded now: a test that gave up waiting can already see why.
            record("timeout", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(request.app[CLOSING_KEY].wait(), config.timeout_seconds)
            _hang_up(request)
            return web.Response()
        if decision.kind in ("throttle", "rate_limited"):
            response = api.throttled(decision, config)
            retry_after = decision.retry_after_header
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
            record("throttled" if decision.kind == "throttle" else "rate_limited", 429)
            return response
        if decision.kind == "error" and decision.status is not None:
            record("error", decision.status)
            return api.server_error(decision.status)

        incoming = Incoming(
            request=request,
            provider=api.name,
            seq=seq,
            raw=raw,
            body=body,
            received_monotonic=received_monotonic,
            received_at=received_at,
            config=config,
            state=state,
        )
        try:
            handled = await api.handle(incoming)
        except Exception:
            record("error", 500)
            raise
        lost = decision.kind == "lost_reply"
        record(
            "lost_reply" if lost else handled.outcome,
            None if lost else handled.response.status,
            handled,
        )
        dispatcher = request.app[DISPATCHER_KEY]
        for callback in handled.callbacks:
            dispatcher.spawn(callback)
        if lost:
            _hang_up(request)
            return web.Response()
        return handled.response

    return handler
