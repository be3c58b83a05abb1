"""Twilio status callbacks: check ``X-Twilio-Signature``, turn the final status into an update.

Twilio posts a form to the ``StatusCallback`` URL of each message or call as its status changes,
signed with the account's auth token (HMAC-SHA1 of the full URL and the sorted form fields). The
SDK's ``RequestValidator`` checks it. Only final states become updates; each outcome but
``delivered`` leaves the delivery failed:

================================  ===============================================
Messages (``MessageStatus``)       outcome
================================  ===============================================
delivered, read                    delivered
undelivered, failed                undelivered, reason "undelivered: 30003 ..."
canceled                           undelivered, reason "canceled"
accepted, scheduled, queued,       none (the message is still on its way)
sending, sent
================================  ===============================================

================================  ===============================================
Calls (``CallStatus``)             outcome
================================  ===============================================
completed                          delivered (the call was answered)
busy, no-answer, failed, canceled  undelivered, reason "call busy" ...
queued, initiated, ringing,        none
in-progress
================================  ===============================================

The delivery is found by the ``delivery_id`` query parameter the notifier put in the callback URL,
or else by the message or call SID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import parse_qsl

from orchestrator.plugin import (
    ConfigurationError,
    ReceiptOutcome,
    ReceiptRejected,
    ReceiptRequest,
    ReceiptUpdate,
)

from .callbacks import canonical, delivery_of
from .notifiers import RECEIPT_PATH

_MESSAGE_DELIVERED: Final = frozenset({"delivered", "read"})
_MESSAGE_FAILED: Final = frozenset({"undelivered", "failed", "canceled"})
_CALL_DELIVERED: Final = frozenset({"completed"})
_CALL_FAILED: Final = frozenset({"busy", "no-answer", "failed", "canceled"})

#: Delivery error codes of status callbacks, in a few words (https://www.twilio.com/docs/api/errors).
DELIVERY_ERRORS: Final[dict[str, str]] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error",
    "30010": "message price exceeds max price",
    "30034": "sender not registered for A2P 10DLC",
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value, whatever the case of its name in ``headers``."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _fields(request: ReceiptRequest) -> dict[str, str]:
    if request.form:
        return dict(request.form)
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ReceiptRejected("the status callback is not UTF-8 form data", status=400) from None
    return dict(parse_qsl(text, keep_blank_values=True))


def _candidate_urls(url: str, public_base: str | None) -> list[str]:
    """The URLs Twilio may have signed: the one received, its canonical form, and the same path
    under the public base URL (a proxy in front of the server changes scheme and host)."""
    urls = [url, canonical(url)]
    if public_base:
        path_at = url.find(RECEIPT_PATH)
        if path_at >= 0:
            public = public_base.rstrip("/") + url[path_at:]
            urls += [public, canonical(public)]
    return list(dict.fromkeys(urls))


def verify(request: ReceiptRequest, fields: Mapping[str, str]) -> None:
    """Raise :class:`ReceiptRejected` unless ``X-Twilio-Signature`` matches the auth token."""
    from twilio.request_validator import RequestValidator

    settings = request.settings  # resolved by the host: the same values TwilioSms gets
    token = settings.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise ConfigurationError("TWILIO_AUTH_TOKEN is not set: Twilio receipts cannot be checked")
    signature = _header(request.headers, "X-Twilio-Signature")
    if not signature:
        raise ReceiptRejected("missing X-Twilio-Signature header")
    validator = RequestValidator(token)
    urls = _candidate_urls(request.url, settings.get("BREACH_RECEIPT_BASE_URL"))
    if not any(validator.validate(url, dict(fields), signature) for url in urls):
        raise ReceiptRejected("X-Twilio-Signature does not match this request")


def _reason(status: str, fields: Mapping[str, str], prefix: str = "") -> str:
    code = fields.get("ErrorCode")
    if not code:
        return f"{prefix}{status}"
    meaning = DELIVERY_ERRORS.get(code)
    return f"{prefix}{status}: {code}" + (f" ({meaning})" if meaning else "")


def updates_from(url: str, fields: Mapping[str, str]) -> list[ReceiptUpdate]:
    """The update one (already verified) status callback means; [] while still in flight."""
    key = delivery_of(url)
    if "MessageStatus" in fields or "SmsStatus" in fields:
        status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").lower()
        sid = fields.get("MessageSid") or fields.get("SmsSid") or None
        if status in _MESSAGE_DELIVERED:
            return [ReceiptUpdate(ReceiptOutcome.DELIVERED, key, sid, event=status)]
        if status in _MESSAGE_FAILED:
            reason = _reason(status, fields)
            return [ReceiptUpdate(ReceiptOutcome.UNDELIVERED, key, sid, reason, event=status)]
        return []
    if "CallStatus" in fields:
        status = fields["CallStatus"].lower()
        sid = fields.get("CallSid") or None
        if status in _CALL_DELIVERED:
            return [ReceiptUpdate(ReceiptOutcome.DELIVERED, key, sid, event=status)]
        if status in _CALL_FAILED:
            reason = _reason(status, fields, "call ")
            return [ReceiptUpdate(ReceiptOutcome.UNDELIVERED, key, sid, reason, event=status)]
        return []
    raise ReceiptRejected("not a Twilio status callback (no MessageStatus or CallStatus)", 400)


async def handle(request: ReceiptRequest) -> Sequence[ReceiptUpdate]:
    """The ``twilio`` receipt handler: verify the signature, then map the status."""
    fields = _fields(request)
    verify(request, fields)
    return updates_from(request.url, fields)
