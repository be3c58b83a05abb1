"""Twilio notifiers for breach-orchestrator: SMS (``twilio-sms``) and voice calls (``twilio-call``).

Payload building needs no Twilio SDK; the SDK is imported only where live sending happens and
where a status callback's signature is checked. Status callbacks are handled by the ``twilio``
receipt handler (mounted by the server at ``/receipts/twilio``).
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, ReceiptHandler, hookimpl

from . import receipts
from .notifiers import TwilioCall, TwilioSms
from .sms import SmsTooLong, count_segments
from .twiml import TwimlTooLong, build_twiml, voice_for

__all__ = [
    "SmsTooLong",
    "TwilioCall",
    "TwilioSms",
    "TwimlTooLong",
    "build_twiml",
    "count_segments",
    "voice_for",
]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the SMS and call notifiers."""
    register(TwilioSms)
    register(TwilioCall)


@hookimpl
def register_receipts(register: Callable[[str, ReceiptHandler], None]) -> None:
    """Register the status-callback handler for both notifiers."""
    register("twilio", receipts.handle)
