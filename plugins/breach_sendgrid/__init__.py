"""SendGrid e-mail notifier for breach-orchestrator (``sendgrid-email``).

Payload building needs no SendGrid SDK; the SDK is imported only where live sending happens and
where a signed Event Webhook post is verified. Events are handled by the ``sendgrid`` receipt
handler (mounted by the server at ``/receipts/sendgrid``).
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, ReceiptHandler, hookimpl

from . import receipts
from .notifier import SendGridEmail
from .payload import MAX_PERSONALIZATIONS, SUBSTITUTIONS_MAX_BYTES

__all__ = ["MAX_PERSONALIZATIONS", "SUBSTITUTIONS_MAX_BYTES", "SendGridEmail"]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the e-mail notifier."""
    register(SendGridEmail)


@hookimpl
def register_receipts(register: Callable[[str, ReceiptHandler], None]) -> None:
    """Register the Event Webhook handler."""
    register("sendgrid", receipts.handle)
