"""Twilio Programmable Messaging and Voice: ``Messages.json`` and ``Calls.json``.

Answers like ``api.twilio.com/2010-04-01``: form-encoded requests, HTTP Basic auth with the
account SID and auth token, 201 with the resource JSON, errors as
``{"code", "message", "more_info", "status"}``. Twilio's test-credential magic numbers behave as
documented (``+15005550001`` invalid, ``+15005550004`` blocked, ...); any other well-formed E.164
number is accepted, as a live account would.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from datetime import datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from ..segments import count_segments
from .base import (
    Callback,
    Handled,
    Incoming,
    ProviderAPI,
    flatten_form,
    form_fields,
    gateway_error,
    same_secret,
)
from .callbacks import CallbackDispatcher, twilio_signature
from .config import ProviderConfig
from .faults import FaultDecision
from .state import AcceptedMessage

__all__ = ["TwilioAPI"]

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAX_BODY = 1600

# Test-credential magic numbers: https://www.twilio.com/docs/iam/test-credentials
_SMS_FROM_ERRORS = {
    "+15005550001": (
        21212,
        "The 'From' number {n} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    "+15005550007": (
        21606,
        "The 'From' phone number provided ({n}) is not a valid "
        "message-capable Twilio phone number for this destination/account.",
    ),
    "+15005550008": (
        21611,
        "This 'From' number ({n}) has exceeded the maximum number of queued messages.",
    ),
}
_SMS_TO_ERRORS = {
    "+15005550001": (21211, "Invalid 'To' Phone Number: {n}"),
    "+15005550002": (
        21612,
        "The 'To' phone number: {n}, is not currently reachable using the "
        "'From' phone number via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region "
        "indicated by the 'To' number: {n}.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number {n} is not a valid mobile number"),
}
_CALL_FROM_ERRORS = {
    "+15005550001": (21212, "The source {n} is not a valid phone number."),
}
_CALL_TO_ERRORS = {
    "+15005550001": (21217, "Phone number {n} does not appear to be valid."),
    "+15005550002": (21214, "'To' phone number {n} cannot be reached."),
    "+15005550003": (
        21215,
        "Account not authorized to call {n}. Perhaps you need to enable "
        "some international permissions.",
    ),
    "+15005550004": (21216, "Account not allowed to call {n}."),
}
_CALL_EVENTS = ("initiated", "ringing", "answered", "completed")


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }
    return web.json_response(body, status=status)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)  # "Thu, 30 Jul 2015 20:12:31 +0000", as Twilio writes it


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


class TwilioAPI(ProviderAPI):
    """The two Twilio resources notifications use."""

    name: ClassVar[str] = "twilio"

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token

    def routes(self) -> list[tuple[str, str]]:
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        return [("POST", f"{base}/Messages.json"), ("POST", f"{base}/Calls.json")]

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        return flatten_form(form_fields(raw))

    def throttled(self, decision: FaultDecision, config: ProviderConfig) -> web.Response:
        return _error(429, 20429, "Too Many Requests")

    def server_error(self, status: int) -> web.Response:
        if status == 500:
            return _error(500, 20500, "An internal server error has occurred")
        if status == 503:
            return _error(503, 20503, "Service Unavailable")
        return gateway_error(status)

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return same_secret(user, self.account_sid) and same_secret(password, self.auth_token)

    async def handle(self, incoming: Incoming) -> Handled:
        request = incoming.request
        if not self._authenticated(request):
            response = _error(
                401,
                20003,
                "Authentication Error - invalid username",
                detail="Your AccountSid or AuthToken was incorrect.",
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return Handled(response, "unauthorized")
        if request.match_info["account_sid"] != self.account_sid:
            return Handled(
                _error(404, 20404, f"The requested resource {request.path} was not found"),
                "rejected",
            )
        fields = form_fields(incoming.raw)
        if request.path.endswith("/Calls.json"):
            return self._create_call(incoming, fields)
        return self._create_message(incoming, fields)

    # -- Messages ------------------------------------------------------------------------------

    def _create_message(self, incoming: Incoming, fields: dict[str, list[str]]) -> Handled:
        to = _first(fields, "To")
        sender = _first(fields, "From")
        service = _first(fields, "MessagingServiceSid")
        body = _first(fields, "Body")
        has_content = bool(body) or "MediaUrl" in fields or "ContentSid" in fields
        if not to:
            return Handled(_error(400, 21604, "A 'To' phone number is required."), "rejected")
        if not sender and not service:
            return Handled(
                _error(
                    400,
                    21603,
                    "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
                ),
                "rejected",
            )
        if not has_content:
            return Handled(_error(400, 21602, "Message body is required."), "rejected")
        if body is not None and len(body) > _MAX_BODY:
            return Handled(
                _error(
                    400, 21617, "The concatenated message body exceeds the 1600 character limit."
                ),
                "rejected",
            )
        if sender and sender in _SMS_FROM_ERRORS:
            code, text = _SMS_FROM_ERRORS[sender]
            return Handled(_error(400, code, text.format(n=sender)), "rejected")
        if to in _SMS_TO_ERRORS:
            code, text = _SMS_TO_ERRORS[to]
            return Handled(_error(400, code, text.format(n=to)), "rejected")
        if not _E164.match(to):
            return Handled(_error(400, 21211, f"Invalid 'To' Phone Number: {to}"), "rejected")

        sid = _sid("SM")
        created = _rfc2822(incoming.received_at)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        text = body or ""
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": text,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(fields.get("MediaUrl", []))),
            "num_segments": str(count_segments(text).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Through a Messaging Service the sender is chosen later: Twilio says "accepted".
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        callback_url = _first(fields, "StatusCallback") or incoming.config.callback_url
        accepted = AcceptedMessage(
            provider=self.name,
            channel="sms",
            message_id=sid,
            recipient=to,
            delivery_id=_delivery_id_from(callback_url),
            body=text,
            request_seq=incoming.seq,
            accepted_monotonic=incoming.received_monotonic,
            accepted_at=incoming.received_at,
        )
        callbacks: list[Callback] = []
        if callback_url:
            draw = incoming.state.random(self.name)
            callbacks.append(
                self._message_receipts(
                    callback_url, sid, to, sender, service, incoming.config, draw
                )
            )
        return Handled(web.json_response(resource, status=201), "accepted", [accepted], callbacks)

    def _message_receipts(
        self,
        url: str,
        sid: str,
        to: str,
        sender: str | None,
        service: str | None,
        config: ProviderConfig,
        draw: float,
    ) -> Callback:
        failure_rate = config.receipt_failure_rate
        delay = config.callback_delay
        steps: list[tuple[str, str | None]]
        if draw < failure_rate / 2:
            steps = [("failed", "30008")]  # never left Twilio: "Unknown error"
        elif draw < failure_rate:
            steps = [("sent", None), ("undelivered", "30003")]  # "Unreachable destination handset"
        else:
            steps = [("sent", None), ("delivered", None)]

        async def send(dispatcher: CallbackDispatcher) -> None:
            for status, error_code in steps:
                await asyncio.sleep(delay)
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "From": sender or "",
                    "MessageSid": sid,
                    "MessageStatus": status,
                    "SmsSid": sid,
                    "SmsStatus": status,
                    "To": to,
                }
                if service:
                    params["MessagingServiceSid"] = service
                if error_code:
                    params["ErrorCode"] = error_code
                await dispatcher.post_form(self.name, url, params, self._signed(url, params))

        return send

    def _signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
        }

    # -- Calls ---------------------------------------------------------------------------------

    def _create_call(self, incoming: Incoming, fields: dict[str, list[str]]) -> Handled:
        to = _first(fields, "To")
        sender = _first(fields, "From")
        twiml = _first(fields, "Twiml")
        url = _first(fields, "Url")
        if not to:
            return Handled(_error(400, 21201, "No 'To' number is specified"), "rejected")
        if not sender:
            return Handled(_error(400, 21213, "No 'From' number is specified"), "rejected")
        if not twiml and not url and not _first(fields, "ApplicationSid"):
            return Handled(
                _error(400, 21205, "Either a 'Url', 'Twiml' or 'ApplicationSid' is required."),
                "rejected",
            )
        if sender in _CALL_FROM_ERRORS:
            code, text = _CALL_FROM_ERRORS[sender]
            return Handled(_error(400, code, text.format(n=sender)), "rejected")
        if to in _CALL_TO_ERRORS:
            code, text = _CALL_TO_ERRORS[to]
            return Handled(_error(400, code, text.format(n=to)), "rejected")
        if not _E164.match(to):
            return Handled(
                _error(400, 21217, f"Phone number {to} does not appear to be valid."), "rejected"
            )

        sid = _sid("CA")
        created = _rfc2822(incoming.received_at)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json"
        resource = {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": created,
            "date_updated": created,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": sender,
            "from_formatted": sender,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {
                "recordings": uri.replace(".json", "/Recordings.json"),
                "notifications": uri.replace(".json", "/Notifications.json"),
            },
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": uri,
        }
        callback_url = _first(fields, "StatusCallback") or incoming.config.callback_url
        accepted = AcceptedMessage(
            provider=self.name,
            channel="call",
            message_id=sid,
            recipient=to,
            delivery_id=_delivery_id_from(callback_url),
            body=twiml or url,
            request_seq=incoming.seq,
            accepted_monotonic=incoming.received_monotonic,
            accepted_at=incoming.received_at,
        )
        callbacks: list[Callback] = []
        if callback_url:
            events = [e for e in fields.get("StatusCallbackEvent", []) if e in _CALL_EVENTS]
            draw = incoming.state.random(self.name)
            callbacks.append(
                self._call_receipts(callback_url, sid, to, sender, events, incoming.config, draw)
            )
        return Handled(web.json_response(resource, status=201), "accepted", [accepted], callbacks)

    def _call_receipts(
        self,
        url: str,
        sid: str,
        to: str,
        sender: str,
        events: list[str],
        config: ProviderConfig,
        draw: float,
    ) -> Callback:
        failure_rate = config.receipt_failure_rate
        delay = config.callback_delay
        final = "no-answer" if draw < failure_rate / 2 else "busy" if draw < failure_rate else None
        # Twilio sends only "completed" unless StatusCallbackEvent asks for more; a call that was
        # never answered ends with its own status (busy, no-answer) in place of "completed".
        wanted = [e for e in _CALL_EVENTS if e in set(events) | {"completed"}]
        if final:
            wanted = [e for e in wanted if e not in ("answered", "completed")] + [final]

        async def send(dispatcher: CallbackDispatcher) -> None:
            for sequence, status in enumerate(wanted):
                await asyncio.sleep(delay)
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "CallSid": sid,
                    "CallStatus": status,
                    "Direction": "outbound-api",
                    "From": sender,
                    "SequenceNumber": str(sequence),
                    "To": to,
                }
                if status == "completed":
                    params["CallDuration"] = "12"
                await dispatcher.post_form(self.name, url, params, self._signed(url, params))

        return send


def _delivery_id_from(callback_url: str | None) -> str | None:
    """Twilio carries no idempotency field; a plugin may put the id in its callback URL."""
    if not callback_url:
        return None
    values = parse_qs(urlsplit(callback_url).query).get("delivery_id")
    return values[0] if values else None
