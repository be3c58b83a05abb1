"""A generic provider for the engine's own test notifier: ``POST /standin/messages``.

One JSON object ``{"to", "body", "delivery_id"?, "callback_url"?}`` is answered 201
``{"id", "delivery_id", "status": "accepted"}`` or 400 ``{"error", "field"}``. A JSON list is a
batch (at most 1,000 items) answered with one result per item, in order:
``{"index", "status": 201, "id", "delivery_id"}`` or ``{"index", "status": 400, "error", "field"}``;
the HTTP status is 201 when every item was accepted and 207 otherwise. A ``to`` starting with
``invalid`` is refused (a permanent failure to classify). With a ``callback_url`` (the item's or
the configured one) a receipt ``{"id", "delivery_id", "to", "status": "delivered"|"failed"}`` is
posted as JSON. Auth is a bearer token when the simulator is configured with one.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, ClassVar

from aiohttp import web

from .base import (
    Callback,
    Handled,
    Incoming,
    ProviderAPI,
    bearer_token,
    gateway_error,
    json_body,
    same_secret,
)
from .callbacks import CallbackDispatcher
from .config import ProviderConfig
from .faults import FaultDecision
from .state import AcceptedMessage

__all__ = ["StandinAPI"]

MAX_BATCH = 1000


def _problem(item: Any) -> tuple[str, str] | None:
    """``(error, field)`` when the item cannot be accepted."""
    if not isinstance(item, dict):
        return "each message must be a JSON object", "message"
    to = item.get("to")
    if not isinstance(to, str) or not to:
        return "'to' is required and must be a non-empty string", "to"
    if not isinstance(item.get("body"), str):
        return "'body' is required and must be a string", "body"
    delivery_id = item.get("delivery_id")
    if delivery_id is not None and not isinstance(delivery_id, str):
        return "'delivery_id' must be a string", "delivery_id"
    if to.startswith("invalid"):
        return f"invalid recipient {to!r}", "to"
    return None


class StandinAPI(ProviderAPI):
    """The stand-in provider: the smallest API that still behaves like one."""

    name: ClassVar[str] = "standin"

    def __init__(self, token: str | None) -> None:
        self.token = token

    def routes(self) -> list[tuple[str, str]]:
        return [("POST", "/standin/messages")]

    def throttled(self, decision: FaultDecision, config: ProviderConfig) -> web.Response:
        return web.json_response(
            {"error": "rate limited", "retry_after": decision.retry_after_header}, status=429
        )

    def server_error(self, status: int) -> web.Response:
        if status in (500, 503):
            return web.json_response({"error": "provider unavailable"}, status=status)
        return gateway_error(status)

    async def handle(self, incoming: Incoming) -> Handled:
        if self.token is not None:
            token = bearer_token(incoming.request)
            if token is None or not same_secret(token, self.token):
                return Handled(
                    web.json_response({"error": "unauthorized"}, status=401), "unauthorized"
                )
        payload = json_body(incoming.raw)
        if isinstance(payload, dict):
            problem = _problem(payload)
            if problem:
                return Handled(
                    web.json_response({"error": problem[0], "field": problem[1]}, status=400),
                    "rejected",
                )
            message, callback = self._accept(incoming, payload)
            body = {
                "id": message.message_id,
                "delivery_id": message.delivery_id,
                "status": "accepted",
            }
            return Handled(
                web.json_response(body, status=201),
                "accepted",
                [message],
                [callback] if callback else [],
            )
        if not isinstance(payload, list) or not payload or len(payload) > MAX_BATCH:
            error = f"expected a JSON object or a list of 1 to {MAX_BATCH} objects"
            return Handled(web.json_response({"error": error}, status=400), "rejected")

        results: list[dict[str, Any]] = []
        accepted: list[AcceptedMessage] = []
        callbacks: list[Callback] = []
        for index, item in enumerate(payload):
            problem = _problem(item)
            if problem:
                results.append(
                    {"index": index, "status": 400, "error": problem[0], "field": problem[1]}
                )
                continue
            message, callback = self._accept(incoming, item)
            accepted.append(message)
            if callback:
                callbacks.append(callback)
            results.append(
                {
                    "index": index,
                    "status": 201,
                    "id": message.message_id,
                    "delivery_id": message.delivery_id,
                }
            )
        all_ok = len(accepted) == len(payload)
        outcome = "accepted" if all_ok else "partial" if accepted else "rejected"
        return Handled(
            web.json_response(results, status=201 if all_ok else 207), outcome, accepted, callbacks
        )

    def _accept(
        self, incoming: Incoming, item: dict[str, Any]
    ) -> tuple[AcceptedMessage, Callback | None]:
        message = AcceptedMessage(
            provider=self.name,
            channel="standin",
            message_id="sim_" + secrets.token_hex(12),
            recipient=item["to"],
            delivery_id=item.get("delivery_id"),
            body=item["body"],
            request_seq=incoming.seq,
            accepted_monotonic=incoming.received_monotonic,
            accepted_at=incoming.received_at,
        )
        url = item.get("callback_url") or incoming.config.callback_url
        if not isinstance(url, str) or not url:
            return message, None
        failed = incoming.state.random(self.name) < incoming.config.receipt_failure_rate
        delay = incoming.config.callback_delay
        receipt = {
            "id": message.message_id,
            "delivery_id": message.delivery_id,
            "to": message.recipient,
            "status": "failed" if failed else "delivered",
        }

        async def send(dispatcher: CallbackDispatcher) -> None:
            await asyncio.sleep(delay)
            await dispatcher.post_json(self.name, url, receipt, {})

        return message, send
