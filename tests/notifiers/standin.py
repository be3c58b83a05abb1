"""In-tree test notifiers for the delivery engine.

``standin-sms`` speaks the simulator's generic ``POST /standin/messages`` API over real HTTP
(aiohttp), batching up to ``max_batch`` messages a request; ``null-sms`` does no I/O at all, to
measure the engine itself. Load them with ``--plugins-dir tests/notifiers``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import aiohttp

from orchestrator.plugin import Message, Mode, Notifier, Outcome, Receipt, Setting, hookimpl
from orchestrator.retry import parse_retry_after


class StandinSms(Notifier):
    """SMS through the simulator's stand-in API."""

    name = "standin-sms"
    channel = "sms"
    contact = "phone"
    max_batch = int(os.environ.get("STANDIN_MAX_BATCH", "20"))
    default_rate = float(os.environ.get("STANDIN_RATE", "2000"))
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("STANDIN_URL", "Base URL of the provider stand-in"),
    )

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._session: aiohttp.ClientSession | None = None
        self.timeout = float(os.environ.get("STANDIN_TIMEOUT", "5"))

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {"to": message.address, "body": message.notice.sms,
                "delivery_id": message.delivery_id}  # fmt: skip

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        url = self.settings["STANDIN_URL"].rstrip("/") + "/standin/messages"
        ids = [m.delivery_id for m in batch]
        try:
            async with self._session.post(url, json=[self.build_payload(m) for m in batch]) as r:
                if r.status == 429 or r.status >= 500:
                    retry = parse_retry_after(r.headers.get("Retry-After"))
                    return [Receipt(i, Outcome.TRANSIENT, error=f"HTTP {r.status}",
                                    retry_after=retry) for i in ids]  # fmt: skip
                body = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return [Receipt(i, Outcome.TRANSIENT, error=type(exc).__name__) for i in ids]
        if not isinstance(body, list):
            return [Receipt(i, Outcome.PERMANENT, error=str(body)) for i in ids]
        receipts = []
        for item in body:
            delivery = ids[item["index"]]
            if item["status"] == 201:
                receipts.append(Receipt(delivery, Outcome.SENT, provider_id=item["id"]))
            else:
                receipts.append(Receipt(delivery, Outcome.PERMANENT, error=item["error"]))
        return receipts

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class NullSms(Notifier):
    """Accepts everything instantly: what the engine costs without any provider."""

    name = "null-sms"
    channel = "sms"
    contact = "phone"
    max_batch = 100
    default_rate = 1_000_000.0

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {"to": message.address, "body": message.notice.sms}

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        for message in batch:
            self.build_payload(message)
        return [Receipt(m.delivery_id, Outcome.SENT, provider_id=f"null-{m.delivery_id}")
                for m in batch]  # fmt: skip


class NullEmail(NullSms):
    """E-mail that is accepted instantly (a fallback channel for engine tests)."""

    name = "null-email"
    channel = "email"
    contact = "email"


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    register(StandinSms)
    register(NullSms)
    register(NullEmail)
