"""The SendGrid e-mail notifier: one accessible e-mail per person, sent in batches of 1,000.

``send`` posts the bodies ``build_batch_payload`` makes (at most 1,000 personalizations each,
every one carrying its delivery id in ``custom_args``) through the SDK, one request at a time in a
worker thread, and gives every message the outcome of its request (see :mod:`.outcomes`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from orchestrator.plugin import (
    BreachError,
    Contact,
    Message,
    Mode,
    Notifier,
    Outcome,
    Receipt,
    Setting,
)
from orchestrator.plugin.reasons import mask_reason

from .document import EmailDocument, render_html
from .outcomes import Answer
from .payload import (
    MAX_PERSONALIZATIONS,
    MailConfig,
    batch_bodies,
    personal_part,
    shared_body,
    single_body,
)

if TYPE_CHECKING:
    from .live import SendGridSession

log = logging.getLogger(__name__)

#: Seconds to wait for one answer when SENDGRID_TIMEOUT is not set.
DEFAULT_TIMEOUT = 30.0
#: requests in flight at once, each blocking a thread of the notifier's own: the event loop's
#: default executor (processors + 4 threads) would cap them below the engine's --concurrency
POST_THREADS = 64
_T = TypeVar("_T")
_BLAMED_OTHERS = "not sent: SendGrid refused the request because of other recipients in it"


class SendGridEmail(Notifier):
    """E-mail through SendGrid's v3 mail/send API, text and HTML parts, no tracking."""

    name: ClassVar[str] = "sendgrid-email"
    channel: ClassVar[str] = "email"
    contact: ClassVar[Contact | None] = "email"
    max_batch: ClassVar[int] = MAX_PERSONALIZATIONS
    # Mailbox providers defer bursts from one sender and a campaign's reputation is shared with
    # every later notice: 500 messages/s (30,000 a minute, one request every 2 s at full batches)
    # is fast for a breach campaign and gentle on a dedicated IP.
    default_rate: ClassVar[float] = 500.0
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("SENDGRID_API_KEY", "SendGrid API key with Mail Send permission", secret=True),
        Setting("BREACH_EMAIL_FROM", 'Verified sender, "Name <address>" or an address'),
        Setting(
            "BREACH_EMAIL_REPLY_TO",
            "Reply-To address (default: the organisation's contact_email)",
            required=False,
        ),
        Setting(
            "SENDGRID_TEMPLATE_ID",
            "Dynamic template (d-...) to lay out the notice instead of the built-in e-mail",
            required=False,
        ),
        Setting(
            "SENDGRID_API_BASE_URL",
            "Base URL replacing https://api.sendgrid.com (EU residency: https://api.eu.sendgrid.com;"
            " a simulator in tests)",
            required=False,
        ),
        Setting(
            "SENDGRID_TIMEOUT",
            f"Seconds to wait for SendGrid's answer to one request (default {DEFAULT_TIMEOUT:g})",
            required=False,
        ),
        Setting(
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            "Verification key of the signed Event Webhook (base64, as the SendGrid console shows "
            "it): receipts must carry a valid ECDSA signature",
            required=False,
        ),
        Setting(
            "SENDGRID_WEBHOOK_SECRET",
            "Shared secret the Event Webhook URL carries (?token=... or as the basic-auth "
            "password); needed when no public key is set",
            required=False,
            secret=True,
        ),
    )

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, clock=clock)
        self._session: SendGridSession | None = None
        self._threads: ThreadPoolExecutor | None = None

    @property
    def config(self) -> MailConfig:
        """The sender configuration; an unset sender shows as ``<BREACH_EMAIL_FROM>``."""
        return MailConfig(
            sender=self.settings.get("BREACH_EMAIL_FROM") or None,
            reply_to=self.settings.get("BREACH_EMAIL_REPLY_TO") or None,
            template_id=self.settings.get("SENDGRID_TEMPLATE_ID") or None,
        )

    def build_payload(self, message: Message) -> dict[str, Any]:
        """The /v3/mail/send JSON body for this one message."""
        return single_body(message, self.config, self.clock().date())

    def shared_payload(self, message: Message) -> dict[str, Any]:
        """The body every recipient of this notice shares: envelope, subject, rendered content."""
        return shared_body(message, self.config, self.clock().date())

    def personal_payload(self, message: Message) -> list[str | None]:
        """Address, name and delivery id: all a body takes from the person."""
        return personal_part(message)

    def build_batch_payload(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """The /v3/mail/send JSON bodies that deliver ``messages`` (see ``payload`` module)."""
        return batch_bodies(messages, self.config, self.clock().date())

    def preview_html(self, message: Message) -> str:
        """The HTML part of the e-mail, exactly as sent without a dynamic template."""
        return render_html(EmailDocument.from_message(message, self.clock().date()))

    # -- live sending ------------------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds to wait for one answer (SENDGRID_TIMEOUT, default 30)."""
        return self.seconds_setting("SENDGRID_TIMEOUT", DEFAULT_TIMEOUT)

    def session(self) -> SendGridSession:
        """The SDK client, made on first use and kept (it holds no connection between calls)."""
        if self._session is None:
            from .live import SendGridSession  # the SDK loads only when something is really sent

            self.require_settings()  # the API key and the sender
            self._session = SendGridSession(
                self.settings["SENDGRID_API_KEY"],
                self.settings.get("SENDGRID_API_BASE_URL") or None,
                self.timeout(),
            )
        return self._session

    def _bodies(
        self, batch: Sequence[Message], receipts: dict[str, Receipt]
    ) -> list[dict[str, Any]]:
        """The request bodies for ``batch``; a message that cannot be built gets a permanent
        receipt in ``receipts`` and stays out of every body."""
        try:
            return self.build_batch_payload(batch)
        except (BreachError, ValueError):
            pass
        # Find the culprits one by one (the slow path runs only when something is wrong).
        good = []
        for message in batch:
            try:
                self.build_payload(message)
            except (BreachError, ValueError) as exc:
                error = mask_reason(str(exc))
                receipts[message.delivery_id] = Receipt(
                    message.delivery_id, Outcome.PERMANENT, error=error
                )
            else:
                good.append(message)
        return self.build_batch_payload(good) if good else []

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Post the batch's bodies one after the other; one receipt per message, batch order.

        A batch-level failure (refused connection, timeout, 429, 5xx) gives every message of
        that request a transient receipt; after a 429 or an unreachable endpoint the remaining
        requests are not tried now and get the same transient receipt. A 400 that names single
        personalizations fails only those, and the request is sent again without them.
        Provider answers never raise; a missing setting raises :class:`ConfigurationError`.
        """
        receipts: dict[str, Receipt] = {}
        session = None if mode == "dry-run" else self.session()
        # rendering 1,000 e-mails takes a while: keep the event loop free meanwhile
        bodies = await self._blocking(self._bodies, batch, receipts)
        stopped: Answer | None = None
        for body in bodies:
            # the mode the core sends in decides, whatever the incident's own mode says
            body["mail_settings"]["sandbox_mode"]["enable"] = mode == "sandbox"
            keys = _keys(body)
            if session is None:
                receipts.update((k, Receipt(k, Outcome.SENT)) for k in keys)
                continue
            if stopped is not None:
                error = f"not sent: an earlier request of this batch failed: {stopped.error}"
                for k in keys:
                    receipts[k] = Receipt(
                        k, Outcome.TRANSIENT, error=error, retry_after=stopped.retry_after
                    )
                continue
            answer = await self._blocking(session.post, body)
            if 0 < len(answer.rejected) < len(keys):
                # A 400 refuses the whole request for a few bad addresses: fail those, and send
                # the others once more without them.
                for index, reason in answer.rejected.items():
                    receipts[keys[index]] = Receipt(keys[index], Outcome.PERMANENT, error=reason)
                kept = [
                    p for i, p in enumerate(body["personalizations"]) if i not in answer.rejected
                ]
                body = {**body, "personalizations": kept}
                keys = _keys(body)
                answer = await self._blocking(session.post, body)
            for index, k in enumerate(keys):
                if index in answer.rejected:
                    receipts[k] = Receipt(k, Outcome.PERMANENT, error=answer.rejected[index])
                elif answer.rejected:  # blamed others again: no third try, the core retries
                    receipts[k] = Receipt(k, Outcome.TRANSIENT, error=_BLAMED_OTHERS)
                else:
                    receipts[k] = Receipt(
                        k, answer.outcome, answer.message_id, answer.error, answer.retry_after,
                        uncertain=answer.uncertain,
                    )  # fmt: skip
            if answer.stop:
                stopped = answer
        return [receipts.get(m.delivery_id) or _lost(m) for m in batch]

    async def _blocking(self, func: Callable[..., _T], /, *args: Any) -> _T:
        """``func(*args)`` in the notifier's own threads, so the event loop is never blocked."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(POST_THREADS, "sendgrid")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(func, *args))

    async def aclose(self) -> None:
        """Let the notifier's threads go; a later send makes new ones."""
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None


def _lost(message: Message) -> Receipt:
    # Every buildable message is in exactly one body; this guards the one-receipt-per-message
    # promise should the batch builder ever drop one.
    log.error("message in no request body", extra={"delivery": message.delivery_id})
    return Receipt(message.delivery_id, Outcome.PERMANENT, error="internal error: not sent")


def _keys(body: Mapping[str, Any]) -> list[str]:
    """The delivery ids of a body's personalizations, in order."""
    return [str(p["custom_args"]["delivery_id"]) for p in body["personalizations"]]
