"""Fixture plugin: a receipt handler that trusts a shared secret header and echoes JSON updates."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence

from orchestrator.plugin import ReceiptRejected, ReceiptRequest, ReceiptUpdate, hookimpl


async def echo(request: ReceiptRequest) -> Sequence[ReceiptUpdate]:
    if not hmac.compare_digest(request.headers.get("x-echo-secret", ""), "s3cret"):
        raise ReceiptRejected("missing or wrong X-Echo-Secret")
    return [ReceiptUpdate(**item) for item in json.loads(request.body)]


@hookimpl
def register_receipts(register: Callable[..., None]) -> None:
    register("echo", echo)
