"""The control API under ``/_sim/``: read what was received, change faults, reset.

GET  /_sim/requests?provider=&limit=   recorded requests (newest last)
GET  /_sim/accepted?provider=          accepted messages
GET  /_sim/callbacks?provider=         receipts posted
GET  /_sim/stats                       counts per provider and outcome
GET  /_sim/faults                      current settings per provider
POST /_sim/faults                      {"provider": "twilio", "error_rate": 0.1, ...}
                                       or {"twilio": {...}, "*": {...}} ("*" = every provider)
POST /_sim/reset                       forget everything, restore the starting settings
POST /_sim/sink/{name}?status=         a receiver for callbacks (answers 204 or ``status``)
GET  /_sim/sink?name=                  what the receiver got
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .base import flatten_form, form_fields, json_body
from .config import PROVIDERS, ProviderConfig
from .keys import DISPATCHER_KEY, STATE_KEY
from .state import SimState, SinkRecord

__all__ = ["add_routes", "parse_fault_request"]


def add_routes(app: web.Application) -> None:
    """Register the ``/_sim/`` routes."""
    app.router.add_get("/_sim/requests", _requests)
    app.router.add_get("/_sim/accepted", _accepted)
    app.router.add_get("/_sim/callbacks", _callbacks)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_get("/_sim/faults", _faults)
    app.router.add_post("/_sim/faults", _set_faults)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_post("/_sim/sink/{name}", _sink_receive)
    app.router.add_get("/_sim/sink", _sink_list)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _provider_param(request: web.Request) -> str | None:
    provider = request.query.get("provider") or None
    if provider is not None and provider not in PROVIDERS:
        raise web.HTTPBadRequest(
            text=f'{{"error": "unknown provider {provider}"}}', content_type="application/json"
        )
    return provider


async def _requests(request: web.Request) -> web.Response:
    records = request.app[STATE_KEY].requests(_provider_param(request))
    limit = request.query.get("limit")
    if limit is not None:
        if not limit.isdigit():
            return _bad("limit must be a whole number")
        records = records[-int(limit) :] if int(limit) else []
    return web.json_response([r.to_dict() for r in records])


async def _accepted(request: web.Request) -> web.Response:
    messages = request.app[STATE_KEY].accepted(_provider_param(request))
    return web.json_response([m.to_dict() for m in messages])


async def _callbacks(request: web.Request) -> web.Response:
    records = request.app[STATE_KEY].callbacks(_provider_param(request))
    return web.json_response([c.to_dict() for c in records])


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats())


async def _faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults())


def parse_fault_request(state: SimState, data: Any) -> dict[str, ProviderConfig]:
    """The new settings a ``POST /_sim/faults`` body asks for, validated before any applies."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if "provider" in data:
        changes = {k: v for k, v in data.items() if k != "provider"}
        requested: dict[str, Any] = {str(data["provider"]): changes}
    else:
        requested = data
    updates: dict[str, ProviderConfig] = {}
    everyone = requested.get("*")
    for name, changes in requested.items():
        if name != "*" and name not in PROVIDERS:
            raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(PROVIDERS)}")
        if not isinstance(changes, dict):
            raise ValueError(f"settings of {name!r} must be an object")
    for provider in PROVIDERS:
        merged = {**(everyone or {}), **requested.get(provider, {})}
        if merged or provider in requested:
            updates[provider] = state.provider_config(provider).replace(**merged)
    return updates


async def _set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        updates = parse_fault_request(state, json_body(await request.read()))
    except (ValueError, TypeError) as exc:
        return _bad(str(exc))
    for provider, cfg in updates.items():
        state.replace_config(provider, cfg)
    return web.json_response(state.faults())


async def _reset(request: web.Request) -> web.Response:
    await request.app[DISPATCHER_KEY].cancel_all()
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


async def _sink_receive(request: web.Request) -> web.Response:
    raw = await request.read()
    is_form = request.content_type == "application/x-www-form-urlencoded"
    form = flatten_form(form_fields(raw)) if is_form else None
    request.app[STATE_KEY].record_sink(
        SinkRecord(
            name=request.match_info["name"],
            url=str(request.url),
            headers=dict(request.headers),
            text=raw.decode("utf-8", errors="replace"),
            form={k: v if isinstance(v, str) else v[-1] for k, v in form.items()} if form else None,
            json=None if is_form else json_body(raw),
            received_at=datetime.now(UTC),
        )
    )
    status = request.query.get("status", "204")
    return web.Response(status=int(status) if status.isdigit() else 204)


async def _sink_list(request: web.Request) -> web.Response:
    records = request.app[STATE_KEY].sink(request.query.get("name") or None)
    return web.json_response([s.to_dict() for s in records])
