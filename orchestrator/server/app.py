"""The HTTP application of ``breach serve`` (FastAPI).

- ``POST /hooks/alertmanager`` — Alertmanager's webhook (payload version "4"), bearer or basic.
- ``POST /hooks/generic`` — any JSON object, signed with HMAC-SHA256 (see :mod:`.auth`).
- ``POST /hooks/grafana`` — Grafana alerting's webhook contact point, with its HMAC signature.
- ``POST /receipts/<name>`` — each receipt handler a plugin registers.
- ``GET /healthz``.
- ``GET /metrics`` — Prometheus text format (:mod:`.metrics`).
- ``/``, ``/login``, ``/incidents/<id>`` — the commander's dashboard (:mod:`.dashboard`).
- ``/api/...`` — the commander API (:mod:`.api`), its OpenAPI at ``/api/openapi.json``.

Refusals are ``application/problem+json`` (RFC 9457): 401 credentials or signature, 409 replay,
400 malformed or wrong-shaped payload, 413 body over the cap (counted while reading, so a huge
body is never buffered), 415 not JSON, 503 a route's notifiers lack settings for its mode. A
refused request creates nothing. Work that touches the ledger runs in worker threads, so the
event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Protocol, TypeVar, cast

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dispatch import Dispatcher
from ..errors import (
    AudienceError,
    BreachError,
    ConfigurationError,
    FactError,
    LedgerError,
    ValidationFailed,
)
from ..logs import mask_text
from ..notifier import Mode
from ..receipts import ReceiptRejected, ReceiptUpdate
from ..session import Breach
from ..version import __version__
from . import alertmanager as am
from . import grafana
from .api import create_api
from .auth import (
    ReplayCache,
    Replayed,
    Unauthorized,
    check_alertmanager,
    check_grafana,
    check_signature,
    decimal,
)
from .config import ServerConfig
from .dashboard import create_dashboard
from .dashboard.pages import PageRefusal, refusal_page, static_files
from .intake import Decision, Intake, LiveUnavailable, PayloadInvalid
from .logs import RequestLog
from .metrics import Metrics
from .receipts import build_request, called_url

log = logging.getLogger("orchestrator.server")
T = TypeVar("T")
PROBLEM = "application/problem+json"
_STATUS = {"create": 201, "join": 200, "no-route": 202, "ignore": 202}
_WORDS = {"create": "created", "join": "joined", "no-route": "no route", "ignore": "ignored"}


class DeliveryEngine(Protocol):
    """What the live delivery engine offers the server: started and stopped with it."""

    async def start(self) -> None:
        """Start scheduling and dispatching (called once the server is up)."""

    async def stop(self) -> None:
        """Stop gracefully (called when the server shuts down)."""


class Refusal(Exception):
    """A request the server will not carry out: answered as a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def problem(status: int, slug: str, title: str, detail: str, **headers: str) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": f"urn:breach:problem:{slug}", "title": title, "status": status,
            "detail": detail}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def note(request: Request, **fields: Any) -> None:
    """Add fields to this request's log line."""
    request.state.log = {**getattr(request.state, "log", {}), **fields}


def refuse(status: int, slug: str, title: str, detail: str, **headers: str) -> NoReturn:
    """Stop handling this request: answer with a problem (see :class:`Refusal`)."""
    raise Refusal(status, slug, title, detail, headers)


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and
                                       media.endswith("+json")):  # fmt: skip
        return
    refuse(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"send the body as application/json (got {media[:60] or 'no Content-Type'})",
    )


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or read), and
    with 408 when it has not all arrived within ``timeout`` seconds (a sender trickling bytes
    would otherwise hold a connection for ever)."""
    header = request.headers.get("content-length")
    if header is not None:
        declared = decimal(header, max_digits=19)
        if declared is None:
            refuse(400, "bad-request", "Bad request", "Content-Length is not a number")
        if declared > limit:
            refuse(
                413,
                "payload-too-large",
                "Payload too large",
                f"the body is {declared} bytes; this server accepts at most {limit}",
            )
    buffer = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) > limit:
                    refuse(
                        413,
                        "payload-too-large",
                        "Payload too large",
                        f"the body exceeds {limit} bytes, the most this server accepts",
                    )
    except TimeoutError:
        refuse(408, "request-timeout", "Request timeout",
               f"the body did not arrive within {timeout:g} s; send it in one go")  # fmt: skip
    return bytes(buffer)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Parsed JSON, or a 400 that says where it is malformed."""
    try:
        return json.loads(body, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        detail = f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except UnicodeDecodeError:
        detail = "the body is not UTF-8 text"
    except RecursionError:
        detail = "the JSON is nested too deeply"
    except ValueError as exc:
        detail = str(exc)
    refuse(400, "malformed-json", "Malformed JSON", detail)


async def in_thread(request: Request, work: Callable[..., T], *args: Any) -> T:
    """Run ledger work in a worker thread; expected failures become problems."""
    try:
        return await anyio.to_thread.run_sync(work, *args)
    except (FactError, PayloadInvalid) as exc:
        refuse(400, "payload-does-not-fit", "Payload does not fit the route", str(exc))
    except LiveUnavailable as exc:
        refuse(503, "live-delivery-unavailable", "Live delivery engine not running", str(exc),
               **{"Retry-After": "60"})  # fmt: skip
    except ConfigurationError as exc:
        refuse(503, "notifier-not-configured", "Notifier settings missing", str(exc),
               **{"Retry-After": "300"})  # fmt: skip
    except (AudienceError, LedgerError) as exc:
        refuse(503, "dependency-unavailable", "Ledger or audience unavailable", str(exc),
               **{"Retry-After": "30"})  # fmt: skip
    except ValidationFailed as exc:
        refuse(500, "playbook-invalid", "A route's playbook is no longer valid",
               f"{len(exc.problems)} problem(s), first: {exc.problems[0] if exc.problems else ''}"
               "; fix the playbook (breach validate) and retry")  # fmt: skip
    except BreachError as exc:
        refuse(500, "not-carried-out", "Not carried out", str(exc))


def decided(request: Request, decision: Decision, stats: Counter[str]) -> JSONResponse:
    """The response to a carried-out decision, and its log fields."""
    stats[decision.action] += 1
    note(request, outcome=decision.action, route=decision.route.name if decision.route else None,
         incident=decision.incident, mode=decision.mode)  # fmt: skip
    body = {"status": _WORDS[decision.action], **decision.summary()}
    return JSONResponse(body, status_code=_STATUS[decision.action])


def create_app(
    config: ServerConfig,
    breach: Breach,
    *,
    engine: DeliveryEngine | None = None,
) -> FastAPI:
    """The server for ``config`` over the process's session. ``engine``, when given, is started
    and stopped with it and makes live routes available; without it, live routes answer 503."""
    host = breach.host
    intake = Intake(config, breach, live_available=engine is not None)
    replays = ReplayCache()
    stats: Counter[str] = Counter()
    settings = {name: host.plugin_settings(plugin)
                for name, (plugin, _) in host.receipt_handlers.items()}  # fmt: skip
    #: a handler's receipts may only touch what its own plugin's notifiers sent
    scopes = {name: [n for n, (owner, _) in host.notifier_classes.items() if owner == plugin]
              for name, (plugin, _) in host.receipt_handlers.items()}  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        """Start the engine (if any) with the server, stop it after the last request."""
        for line in config.notes:
            log.warning("config note", extra={"note": line})
        for route in config.routes:  # pre-flight once at start: the webhooks would be refused
            mode = config.mode_for(route)
            if mode in ("live", "sandbox"):
                try:
                    breach.require_settings(route.playbook, cast(Mode, mode))
                except ConfigurationError as exc:
                    log.warning("route cannot run: its webhooks will be refused",
                                extra={"route": route.name, "error": str(exc)})  # fmt: skip
        if engine is not None:
            await engine.start()
        elif any(config.mode_for(r) == "live" for r in config.routes):
            log.warning("live routes without a live delivery engine: they answer 503",
                        extra={"routes": [r.name for r in config.routes
                                          if config.mode_for(r) == "live"]})  # fmt: skip
        try:
            yield
        finally:
            if engine is not None:
                await engine.stop()

    app = FastAPI(title="breach-orchestrator", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # fmt: skip
    app.add_middleware(RequestLog, behind_proxy=config.behind_proxy)
    app.mount("/api", create_api(config, breach))
    app.mount("/static", static_files(), name="static")
    app.include_router(create_dashboard(config, breach))
    metrics = Metrics(breach)
    dispatcher = getattr(engine, "dispatcher", None)
    if isinstance(dispatcher, Dispatcher):
        metrics.watch(dispatcher)
    app.state.metrics = metrics
    app.state.intake = intake
    app.state.replays = replays

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        """A refusal as a problem document, noted in the request's log line."""
        stats["refused"] += 1
        note(request, outcome="refused", problem=exc.slug, detail=mask_text(exc.detail))
        return problem(exc.status, exc.slug, exc.title, exc.detail, **exc.headers)

    @app.exception_handler(PageRefusal)
    async def page_refused(request: Request, exc: PageRefusal) -> Response:
        """A dashboard refusal: an HTML page saying why."""
        note(request, outcome="refused", detail=mask_text(exc.message))
        return refusal_page(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """404, 405 and other routing errors as problem documents."""
        note(request, outcome="refused")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        detail = {
            404: "no such endpoint: POST /hooks/alertmanager, /hooks/generic, /hooks/grafana, "
            "/receipts/<name>, GET /healthz, /metrics, /api/...",
            405: "wrong method for this endpoint",
        }.get(exc.status_code, str(exc.detail))
        return problem(exc.status_code, title.lower().replace(" ", "-"), title, detail,
                       **(exc.headers or {}))  # fmt: skip

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        """A bug: logged with its traceback; the caller gets a problem, never the traceback."""
        log.error("unexpected error", exc_info=exc, extra={"path": request.url.path})
        return problem(
            500,
            "internal-error",
            "Internal error",
            "the server failed unexpectedly; the error is in its log",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, and what this server is set up to do."""
        return {
            "status": "ok", "version": __version__, "routes": len(config.routes),
            "force_mode": config.force_mode, "live_delivery": engine is not None,
            "receipts": sorted(host.receipt_handlers), "decisions": dict(stats),
        }  # fmt: skip

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        """The campaign in Prometheus text format (see :mod:`.metrics`)."""
        text = await anyio.to_thread.run_sync(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @app.post("/hooks/alertmanager")
    async def alertmanager_hook(request: Request) -> Response:
        """An Alertmanager notification: authenticate, parse, route, create or join."""
        note(request, hook="alertmanager")
        try:
            note(request, auth=check_alertmanager(request.headers.get("authorization"),
                                                  config.alertmanager))  # fmt: skip
        except Unauthorized as exc:
            headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else {}
            refuse(401, "unauthorized", "Unauthorized", str(exc), **headers)
        require_json(request)
        document = parse_json(await read_body(request, config.max_body_bytes, config.body_timeout))
        try:
            notification = am.parse(document)
        except ValueError as exc:
            refuse(400, "wrong-shape", "Not an Alertmanager notification (version 4)", str(exc))
        note(request, alerts=len(notification.alerts), status_of_group=notification.status)
        decision = await in_thread(request, intake.alertmanager, notification)
        return decided(request, decision, stats)

    @app.post("/hooks/grafana")
    async def grafana_hook(request: Request) -> Response:
        """A Grafana alerting notification: verify its HMAC signature, route like Alertmanager's
        (dedupe by group key, join by fingerprint)."""
        note(request, hook="grafana")
        body = await read_body(request, config.max_body_bytes, config.body_timeout)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            check_grafana(headers, body, config.grafana)
        except Unauthorized as exc:
            refuse(401, "unauthorized", "Unauthorized", str(exc))
        require_json(request)
        try:
            notification = grafana.parse(parse_json(body))
        except ValueError as exc:
            refuse(400, "wrong-shape", "Not a Grafana webhook notification (version 1)", str(exc))
        note(request, alerts=len(notification.alerts), status_of_group=notification.status)
        decision = await in_thread(request, functools.partial(intake.alertmanager, notification,
                                                              hook="grafana"))  # fmt: skip
        return decided(request, decision, stats)

    @app.post("/hooks/generic")
    async def generic_hook(request: Request) -> Response:
        """A signed JSON object: verify signature and freshness, refuse replays, route."""
        note(request, hook="generic")
        require_json(request)
        body = await read_body(request, config.max_body_bytes, config.body_timeout)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            signature, timestamp = check_signature(headers, body, config.generic_secret)
        except Unauthorized as exc:
            refuse(401, "unauthorized", "Unauthorized", str(exc))
        try:
            replays.reserve(signature, timestamp)
        except Replayed as exc:
            refuse(409, "replay", "Replayed request", str(exc))
        try:
            document = parse_json(body)
            if not isinstance(document, dict):
                refuse(
                    400,
                    "wrong-shape",
                    "Not a JSON object",
                    f"the body must be a JSON object, not a {type(document).__name__}",
                )
            decision = await in_thread(request, intake.generic, document)
        except BaseException:
            replays.release(signature)  # not carried out: the sender may retry this request
            raise
        return decided(request, decision, stats)

    @app.post("/receipts/{name}")
    async def receipt_hook(name: str, request: Request) -> Response:
        """A provider's delivery receipt, checked by its plugin's handler."""
        note(request, hook="receipts", handler=name)
        entry = host.receipt_handlers.get(name)
        if entry is None:
            known = ", ".join(sorted(host.receipt_handlers)) or "none installed"
            refuse(
                404,
                "no-receipt-handler",
                "No such receipt handler",
                f"no plugin handles receipts named {name!r} ({known})",
            )
        plugin, handler = entry
        body = await read_body(request, config.max_body_bytes, config.body_timeout)
        scope = request.scope
        url = called_url(
            scope.get("scheme", "http"), request.headers, scope.get("raw_path") or
            scope["path"].encode(), scope.get("query_string", b""),
            behind_proxy=config.behind_proxy, fallback_host=f"{config.host}:{config.port}",
        )  # fmt: skip
        receipt = build_request(url=url, method=request.method, headers=request.headers.items(),
                                body=body, content_type=request.headers.get("content-type", ""),
                                settings=settings[name])  # fmt: skip
        try:
            updates = list(await handler(receipt))
        except ReceiptRejected as exc:
            status = exc.status if 400 <= exc.status < 500 else 401
            refuse(status, "receipt-rejected", "Receipt rejected", str(exc))
        except ConfigurationError as exc:
            # this server cannot check such receipts yet: the provider retries later
            log.warning("receipt handler not configured",
                        extra={"plugin": plugin, "handler": name, "error": str(exc)})  # fmt: skip
            refuse(503, "receipts-not-configured", "Receipts not configured", str(exc),
                   **{"Retry-After": "300"})  # fmt: skip
        except Exception as exc:
            log.error(
                "receipt handler failed",
                extra={"plugin": plugin, "handler": name, "error": type(exc).__name__},
            )
            refuse(500, "receipt-handler-failed", "Receipt handler failed",
                   f"plugin {plugin!r} failed on this receipt ({type(exc).__name__}); "
                   "see the server log")  # fmt: skip
        if not all(isinstance(u, ReceiptUpdate) for u in updates):
            refuse(
                500,
                "receipt-handler-failed",
                "Receipt handler failed",
                f"plugin {plugin!r} returned something other than ReceiptUpdate objects",
            )
        applied = 0
        if updates:
            try:
                applied = await anyio.to_thread.run_sync(
                    functools.partial(breach.apply_receipts, updates, notifiers=scopes[name])
                )
            except LedgerError as exc:
                refuse(503, "dependency-unavailable", "Ledger unavailable", str(exc))
        note(request, updates=len(updates), applied=applied)
        if applied < len(updates):
            # a repeat of a final receipt, or one naming what this handler's plugin never sent
            log.warning("receipts changed nothing",
                        extra={"handler": name, "unmatched": len(updates) - applied})  # fmt: skip
        return JSONResponse({"status": "accepted", "updates": len(updates), "applied": applied})

    return app
