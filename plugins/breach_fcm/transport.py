"""One aiohttp connection pool to FCM, a bounded number of requests in flight on it.

firebase-admin's ``send_each_async`` sends each message through an httpx client: per message it
builds an httpx request, runs the credential's auth flow, deep-copies its retry state, and (with
httpcore's pool, encode/httpcore#1035) re-scans every queued request on each answer. At
thousands of messages that costs far more CPU than the HTTP exchange itself. The notifier keeps
the SDK's message model, encoder, credentials, retry policy and error classes (see
:mod:`.live`) and only hands the bytes to this pool.

Failures below HTTP are raised as the httpx exceptions the SDK's own client would raise, so the
SDK's error mapping turns them into the same ``FirebaseError`` classes: a timeout
``ReadTimeout`` (``ConnectTimeout`` while connecting), a connection that could not be made
``ConnectError``, one lost on the way ``RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import aiohttp
import httpx

#: connections to FCM, as many as httpx's own pool allows by default
POOL: Final = 100

#: An answer: status, headers as they came, body.
Answer = tuple[int, tuple[tuple[bytes, bytes], ...], bytes]


class Pool:
    """POSTs over one aiohttp session, made on first use on the running loop.

    Senders hold one of its ``slots`` while they post, so at most ``size`` requests are in
    flight and the others wait for a slot before their timeout starts: a deep queue never turns
    into timeouts (aiohttp's own total timeout also counts the wait for a free connection).
    """

    def __init__(self, timeout: float, size: int = POOL) -> None:
        self.timeout = timeout
        self.size = size
        self.slots = asyncio.Semaphore(size)
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.size),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # no Accept-Encoding: FCM answers uncompressed, and error bodies reach the SDK's
                # parser (through an httpx.Response) exactly as they came
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """One request and its whole answer (the caller holds a slot); failures below HTTP
        raise httpx exceptions."""
        try:
            async with self._opened().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                return answer.status, answer.raw_headers, await answer.read()
        except aiohttp.ConnectionTimeoutError as exc:  # no connection in time: never sent
            raise httpx.ConnectTimeout(
                f"no connection within {self.timeout:g} s", request=_request(url)
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"no answer within {self.timeout:g} s", request=_request(url)
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # never reached FCM
            text = f"{type(exc).__name__}: {exc}"
            raise httpx.ConnectError(text, request=_request(url)) from exc
        except (aiohttp.ClientError, OSError) as exc:  # dropped on the way: FCM may have it
            text = f"{type(exc).__name__}: {exc}"
            raise httpx.RemoteProtocolError(text, request=_request(url)) from exc

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _request(url: str) -> httpx.Request:
    # made only when something failed: the SDK's error classes keep the request they were for
    return httpx.Request("POST", url)
