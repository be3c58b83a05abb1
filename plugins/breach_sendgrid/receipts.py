"""SendGrid Event Webhook: authenticate the POST, turn final events into receipt updates.

SendGrid posts a JSON array of events; the ``custom_args`` of each personalization come back as
top-level keys, so ``delivery_id`` finds the delivery, and ``sg_message_id`` (the request's
``X-Message-Id`` followed by ``.<suffix>``) is kept as the provider id.

========================  =============================================
event                     outcome
========================  =============================================
delivered                 delivered
bounce (type bounce or    bounce, reason "bounce: <SMTP reason>" or
blocked)                  "blocked: <SMTP reason>"
dropped                   bounce, reason "dropped: <reason>" (the
                          address is suppressed: it bounced before,
                          is invalid, or unsubscribed)
deferred, processed,      none (still trying, or not about delivery)
open, click, spamreport,
unsubscribe, ...
========================  =============================================

Authentication, checked in this order, every configured check must pass:

* ``SENDGRID_WEBHOOK_PUBLIC_KEY`` set: the *signed* Event Webhook. The ECDSA (P-256, SHA-256)
  signature of the timestamp followed by the raw body, in ``X-Twilio-Email-Event-Webhook-
  Signature`` / ``-Timestamp``, is verified with the SDK's ``EventWebhook`` helper.
* ``SENDGRID_WEBHOOK_SECRET`` set: the webhook URL configured in SendGrid carries the secret,
  as ``?token=<secret>`` or as the password of basic auth (``https://u:<secret>@host/...``).

With neither configured, every event post is refused: unauthenticated receipts could mark people
as notified who never were. Receipts are idempotent (a replayed "delivered" changes nothing), and
SendGrid retries a failed post for up to 24 hours with the original timestamp, so no freshness
window is enforced.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from orchestrator.plugin import (
    ConfigurationError,
    ReceiptOutcome,
    ReceiptRejected,
    ReceiptRequest,
    ReceiptUpdate,
)
from orchestrator.plugin.reasons import mask_reason

SIGNATURE_HEADER: Final = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
TOKEN_PARAM: Final = "token"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _check_signature(request: ReceiptRequest, public_key: str) -> None:
    from sendgrid.helpers.eventwebhook import EventWebhook

    signature = _header(request.headers, SIGNATURE_HEADER)
    timestamp = _header(request.headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise ReceiptRejected(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        verifier = EventWebhook(public_key)
    # Across sendgrid 6.x the helper has parsed keys with starkbank-ecdsa, ecdsa and cryptography,
    # each failing in its own way (a bare Exception, DER errors, ValueError): the key is unusable.
    except Exception:
        raise ConfigurationError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid base64 EC public key"
        ) from None
    try:
        payload = request.body.decode("utf-8")
        valid = verifier.verify_signature(payload, signature, timestamp)
    except Exception:  # a signature that does not parse, raised as its library's own type
        valid = False
    if not valid:
        raise ReceiptRejected("the Event Webhook signature does not match this request")


def _given_secret(request: ReceiptRequest) -> str | None:
    for key, value in parse_qsl(urlsplit(request.url).query, keep_blank_values=True):
        if key == TOKEN_PARAM:
            return value
    scheme, _, encoded = (_header(request.headers, "Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def authenticate(request: ReceiptRequest, settings: Mapping[str, str]) -> None:
    """Raise :class:`ReceiptRejected` unless the request passes every configured check."""
    public_key = settings.get("SENDGRID_WEBHOOK_PUBLIC_KEY")
    secret = settings.get("SENDGRID_WEBHOOK_SECRET")
    if not public_key and not secret:
        raise ConfigurationError(
            "SendGrid receipts need SENDGRID_WEBHOOK_PUBLIC_KEY (signed Event Webhook) or "
            "SENDGRID_WEBHOOK_SECRET"
        )
    if public_key:
        _check_signature(request, public_key)
    if secret:
        given = _given_secret(request)
        if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
            raise ReceiptRejected("missing or wrong Event Webhook secret")


def _text(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    return value if isinstance(value, str) and value else None


def update_for(event: Mapping[str, Any]) -> ReceiptUpdate | None:
    """The update one event means, or None (not final, or not ours to match)."""
    kind = _text(event, "event")
    key = _text(event, "delivery_id")
    sg_message_id = _text(event, "sg_message_id")
    provider_id = sg_message_id.split(".", 1)[0] if sg_message_id else None
    if kind is None or (key is None and provider_id is None):
        return None
    if kind == "delivered":
        return ReceiptUpdate(ReceiptOutcome.DELIVERED, key, provider_id, event=kind)
    if kind in ("bounce", "dropped"):
        label = (_text(event, "type") or "bounce") if kind == "bounce" else "dropped"
        why = _text(event, "reason") or _text(event, "status") or "no reason given"
        reason = mask_reason(f"{label}: {why}")
        return ReceiptUpdate(ReceiptOutcome.BOUNCE, key, provider_id, reason, event=kind)
    return None


def parse_events(body: bytes) -> list[Mapping[str, Any]]:
    """The event array; :class:`ReceiptRejected` (400) when the body is not one."""
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ReceiptRejected("the Event Webhook body is not JSON", status=400) from None
    if not isinstance(events, list):
        raise ReceiptRejected("the Event Webhook body is not a JSON array", status=400)
    return [e for e in events if isinstance(e, dict)]


async def handle(request: ReceiptRequest) -> Sequence[ReceiptUpdate]:
    """The ``sendgrid`` receipt handler: authenticate, parse, map each final event."""
    authenticate(request, request.settings)
    updates = (update_for(event) for event in parse_events(request.body))
    return [u for u in updates if u is not None]
