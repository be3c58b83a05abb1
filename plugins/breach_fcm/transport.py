"""An httpx transport over aiohttp's connection pool, for firebase-admin's async client.

``send_each_async`` sends through httpx, whose connection pool (httpcore) checks every pooled
connection, with a system call each, for every request it assigns, and re-scans every queued
request against every connection on each answer (encode/httpcore#1035): at a few hundred
requests in flight it spends milliseconds of CPU per message, and the event loop with it.
aiohttp's pool hands a free connection over in constant time.

Only the bottom layer changes. firebase-admin still builds every request from its
``messaging.Message`` model, authenticates it (its credential flow is an httpx ``Auth``),
retries 500 and 503 (its retry transport wraps this one), and turns every answer into its own
exception classes from the ``httpx.Response`` this transport returns. Failures below HTTP
become the httpx exceptions httpx itself would raise: a timeout ``ReadTimeout``, a connection
that could not be made ``ConnectError``, one lost on the way ``RemoteProtocolError``.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx

#: connections to FCM, as many as httpx's own pool allows by default
POOL = 100


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session, made on first use (on the running
    loop, which the SDK's async client is bound to anyway)."""

    def __init__(self, timeout: float, pool: int = POOL) -> None:
        self.timeout = timeout
        self.pool = pool
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # httpx decodes the body by its Content-Encoding: hand it over as it came
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One request and its whole answer."""
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        try:
            async with self._opened().request(
                request.method, str(request.url), data=body or None, headers=headers,
                allow_redirects=False,
            ) as answer:  # fmt: skip
                content = await answer.read()
                status, raw = answer.status, answer.raw_headers
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"no answer within {self.timeout:g} s", request=request
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # never reached FCM
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:  # dropped on the way: FCM may have it
            text = f"{type(exc).__name__}: {exc}"
            raise httpx.RemoteProtocolError(text, request=request) from exc
        return httpx.Response(status, headers=list(raw), content=content, request=request)

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def install(service: Any, timeout: float) -> list[AiohttpTransport]:
    """Put :class:`AiohttpTransport` under the retry transports of ``service``'s async client.

    ``service`` is a ``messaging._MessagingService``. The SDK offers no option for this: the
    retry transports keep the transport they wrap in ``_wrapped_transport``. Should a later
    SDK move it, nothing is replaced and the SDK's own httpx pool sends, only slower.
    """
    installed = []
    client = getattr(service, "_async_client", None)
    for retrying in (getattr(client, "_mounts", None) or {}).values():
        if hasattr(retrying, "_wrapped_transport"):
            transport = AiohttpTransport(timeout)
            retrying._wrapped_transport = transport
            installed.append(transport)
    return installed
