"""The Twilio SDK on the live path: one async client per credentials, requests as form fields.

Imported only when a notifier really sends, so ``breach validate`` and dry runs never load the
SDK. The request fields come from the notifiers' ``build_payload``; this module only turns each
form field into the SDK keyword that writes it back on the wire, so what is sent is exactly what a
dry run shows.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

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
    unknown = sorted(set(form) - set(names))
    if unknown:
        # the payload builder grew a field this module does not send: a bug, not a provider error
        raise RuntimeError(f"no SDK argument for Twilio form field(s) {', '.join(unknown)}")
    return {names[field]: value for field, value in form.items()}


class TwilioSession:
    """An SDK client bound to one account and to the event loop it was created on.

    The SDK's aiohttp session belongs to that loop; :meth:`usable` tells the notifier when it
    must make a new one (a second ``asyncio.run`` in the same process).
    """

    def __init__(self, account_sid: str, auth_token: str, base_url: str | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = AsyncTwilioHttpClient()
        self.client = Client(account_sid, auth_token, http_client=self.http)
        if base_url:
            # Messages and Calls live on api.twilio.com; the SDK's supported override for it.
            self.client.api.base_url = base_url.rstrip("/")
            # TWILIO_EDGE / TWILIO_REGION would rewrite the override's host name (127.0.0.1
            # becomes 127.ie1.0.1): an explicit endpoint wins over them.
            self.client.edge = None
            self.client.region = None

    def usable(self) -> bool:
        """True while the current event loop is the one this session was made on."""
        return asyncio.get_running_loop() is self.loop and not self.loop.is_closed()

    async def create_message(self, form: Mapping[str, Any]) -> str:
        """Create one message; returns its SID (raises the SDK's exceptions)."""
        message = await self.client.messages.create_async(**_kwargs(form, _MESSAGE_ARGS))
        return str(message.sid)

    async def create_call(self, form: Mapping[str, Any]) -> str:
        """Place one call; returns its SID (raises the SDK's exceptions)."""
        call = await self.client.calls.create_async(**_kwargs(form, _CALL_ARGS))
        return str(call.sid)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
