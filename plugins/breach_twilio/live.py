"""The Twilio SDK on the live path: one async client per credentials, requests as form fields.

Imported only when a notifier really sends, so ``breach validate`` and dry runs never load the
SDK. The request fields come from the notifiers' ``build_payload``; this module only turns each
form field into the SDK keyword that writes it back on the wire, so what is sent is exactly what a
dry run shows.

The SDK's client (``Client``, ``create_async``, its resources and exceptions) does the work; only
its HTTP transport is ours (:class:`FormHttpClient`, through the ``http_client`` hook the SDK
offers), because the stock one makes aiohttp build a multipart form writer for every request.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import socket
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

#: What Twilio's Messages and Calls APIs read; the SDK names it in every create request.
FORM_TYPE: Final = "application/x-www-form-urlencoded"

#: Form field -> keyword of ``messages.create_async`` / ``calls.create_async``.
_MESSAGE_ARGS: Final = {
    "To": "to",
    "From": "from_",
    "MessagingServiceSid": "messaging_service_sid",
    "Body": "body",
    "StatusCallback": "status_callback",
}
_CALL_ARGS: Final = {
    "To": "to",
    "From": "from_",
    "Twiml": "twiml",
    "StatusCallback": "status_callback",
    "StatusCallbackEvent": "status_callback_event",
}


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` broke the request before it left (no connection: refused, a name that
    does not resolve, a TLS handshake refused, a connect timeout), so Twilio cannot have it.

    Anything else that breaks a request (the server hung up, a reset, a read timeout, a broken
    answer) may have come after Twilio accepted the message: a retry may send it twice.
    """
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return True
    # raised by the event loop before any connection exists
    return isinstance(exc, ConnectionRefusedError | socket.gaierror)


def _kwargs(form: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    try:
        return {names[field]: value for field, value in form.items()}
    except KeyError:
        # the payload builder grew a field this module does not send: a bug, not a provider error
        unknown = sorted(set(form) - set(names))
        raise RuntimeError(
            f"no SDK argument for Twilio form field(s) {', '.join(unknown)}"
        ) from None


# Field names, and the sender and text every message of a notice repeats, are quoted once; the
# bound keeps the per-recipient values (numbers, callback URLs) from piling up.
_quoted = functools.lru_cache(maxsize=256)(quote_plus)


def form_body(data: Mapping[str, object]) -> bytes:
    """``data`` urlencoded as aiohttp's ``FormData`` writes it: ``urlencode(doseq=True)``, a list
    as repeated fields."""
    parts = []
    for name, value in data.items():
        if isinstance(value, str):
            parts.append(f"{_quoted(name)}={_quoted(value)}")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            parts.extend(f"{_quoted(name)}={_quoted(v)}" for v in value)
        else:  # anything else the SDK might hand over: the standard library's own rules
            parts.append(urlencode([(name, value)], doseq=True))
    return "&".join(parts).encode()


class FormHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # the SDK ships no types
    """The SDK's aiohttp client, made cheaper per request; what goes on the wire is unchanged.

    * The form the SDK hands over is urlencoded here (:func:`form_body`, byte for byte what
      aiohttp's ``FormData`` writes) and posted as bytes: no ``FormData``/``MultipartWriter``
      (and its ``uuid4`` boundary) per request, and the notice's text quoted once, not per
      message.
    * The ``Authorization`` header is encoded once per credentials, not once per request.
    * The SDK's request/response log lines are formatted only when its logger shows INFO; the
      stock client formats every header of every request and answer before the level check.
    * No copy of each request is kept for the SDK's own tests (``_test_only_last_request``).

    Like the stock client it sets no deadline of its own unless the SDK passes one (the notifier
    keeps the deadline), and it returns the SDK's ``Response`` for the SDK to parse and raise on.
    """

    def __init__(self) -> None:
        super().__init__(pool_connections=False)  # the stock session is replaced just below
        # ClientTimeout() sets no limit, as the stock client's per-request timeout=None did
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout())
        self._authorization: dict[tuple[str, str], str] = {}

    def _basic(self, auth: tuple[str, str]) -> str:
        header = self._authorization.get(auth)
        if header is None:
            # what aiohttp's BasicAuth wrote for the stock client (latin-1), without that class:
            # aiohttp deprecates it and warns on every use
            login, password = auth
            if ":" in login:
                raise ValueError('A ":" is not allowed in a Basic auth login (RFC 7617)')
            token = base64.b64encode(f"{login}:{password}".encode("latin1")).decode("ascii")
            header = self._authorization[auth] = f"Basic {token}"
        return header

    async def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request the way the SDK asked for it; the SDK's ``Response`` to it."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        sent = dict(headers) if headers else {}
        if auth is not None:
            sent["Authorization"] = self._basic(auth)
        body = None
        if data is not None:
            body = form_body(data)
            sent.setdefault("Content-Type", FORM_TYPE)
        options: dict[str, Any] = {"params": params, "allow_redirects": allow_redirects}
        if timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout)
        verbose = self.logger.isEnabledFor(logging.INFO)
        if verbose:
            self.log_request({"method": method.upper(), "url": url, "params": params,
                              "headers": headers})  # fmt: skip
        async with self.session.request(
            method.upper(), url, data=body, headers=sent, **options
        ) as answer:
            text = await answer.text()
        if verbose:
            self.log_response(answer.status, answer)
        return Response(answer.status, text, answer.headers)


class TwilioSession:
    """An SDK client bound to one account and to the event loop it was created on.

    The SDK's aiohttp session belongs to that loop; :meth:`usable` tells the notifier when it
    must make a new one (a second ``asyncio.run`` in the same process).
    """

    def __init__(self, account_sid: str, auth_token: str, base_url: str | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = FormHttpClient()
        self.client = Client(account_sid, auth_token, http_client=self.http)
        if base_url:
            # Messages and Calls live on api.twilio.com; the SDK's supported override for it.
            self.client.api.base_url = base_url.rstrip("/")
            # TWILIO_EDGE / TWILIO_REGION would rewrite the override's host name (127.0.0.1
            # becomes 127.ie1.0.1): an explicit endpoint wins over them.
            self.client.edge = None
            self.client.region = None
        # the resource lists, made once rather than looked up through the client per message
        self.messages = self.client.messages
        self.calls = self.client.calls

    def usable(self) -> bool:
        """True while the current event loop is the one this session was made on."""
        # the running loop is never a closed one
        return asyncio.get_running_loop() is self.loop

    async def create_message(self, form: Mapping[str, Any]) -> str:
        """Create one message; returns its SID (raises the SDK's exceptions)."""
        message = await self.messages.create_async(**_kwargs(form, _MESSAGE_ARGS))
        return str(message.sid)

    async def create_call(self, form: Mapping[str, Any]) -> str:
        """Place one call; returns its SID (raises the SDK's exceptions)."""
        call = await self.calls.create_async(**_kwargs(form, _CALL_ARGS))
        return str(call.sid)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
