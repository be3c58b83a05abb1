"""Receipts: status callbacks and event webhooks, posted in the background."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .base import Callback
from .state import CallbackRecord, SimState

__all__ = ["CallbackDispatcher", "is_loopback_host", "is_loopback_url", "twilio_signature"]

log = logging.getLogger(__name__)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the auth token, of the full URL
    followed by every POST parameter as name + value, sorted by name."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname
    return host is not None and is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    """True when ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CallbackDispatcher:
    """Runs receipt coroutines on the simulator's loop without ever delaying an answer."""

    def __init__(self, state: SimState, *, allow_remote: bool = False) -> None:
        self._state = state
        self._allow_remote = allow_remote
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, callback: Callback) -> None:
        """Start one receipt coroutine in the background (ignored once closed)."""
        if self._closed:
            return  # a request finishing during shutdown: its receipts are abandoned
        task = asyncio.get_running_loop().create_task(self._guard(callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, callback: Callback) -> None:
        try:
            await callback(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # a receipt bug must not kill the loop; it shows in the log
            log.exception("simulator receipt failed")

    @property
    def pending(self) -> int:
        """Receipt coroutines still running."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every receipt started so far (and any they started) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        """Abandon pending receipts (reset, shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel pending receipts and close the HTTP client."""
        self._closed = True
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def post_form(
        self, provider: str, url: str, fields: Mapping[str, str], headers: Mapping[str, str]
    ) -> int | None:
        """POST a form-encoded receipt; returns the receiver's status (None when not sent)."""
        return await self._post(provider, url, dict(fields), dict(fields), headers)

    async def post_json(
        self, provider: str, url: str, payload: Any, headers: Mapping[str, str]
    ) -> int | None:
        """POST a JSON receipt; returns the receiver's status (None when not sent)."""
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", **headers}
        return await self._post(provider, url, payload, body, all_headers)

    async def _post(
        self,
        provider: str,
        url: str,
        recorded: Any,
        data: dict[str, str] | bytes,
        headers: Mapping[str, str],
    ) -> int | None:
        status: int | None = None
        error: str | None = None
        if not self._allow_remote and not is_loopback_url(url):
            # The simulator is a test double: it never calls out beyond this machine unless told.
            error = "not sent: callbacks go to loopback addresses only (allow_remote_callbacks)"
        else:
            try:
                async with self._client().post(url, data=data, headers=dict(headers)) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        self._state.record_callback(
            CallbackRecord(
                provider=provider,
                url=url,
                payload=recorded,
                headers=dict(headers),
                status=status,
                error=error,
                sent_at=datetime.now(UTC),
            )
        )
        return status
