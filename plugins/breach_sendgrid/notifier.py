"""The SendGrid e-mail notifier: one accessible e-mail per person, sent in batches of 1,000."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from orchestrator.message import Message
from orchestrator.notifier import Contact, Notifier, Setting

from .document import EmailDocument, render_html
from .payload import MAX_PERSONALIZATIONS, MailConfig, batch_bodies, single_body


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    )

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(settings)
        self.clock = clock

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

    def build_batch_payload(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """The /v3/mail/send JSON bodies that deliver ``messages`` (see ``payload`` module)."""
        return batch_bodies(messages, self.config, self.clock().date())

    def preview_html(self, message: Message) -> str:
        """The HTML part of the e-mail, exactly as sent without a dynamic template."""
        return render_html(EmailDocument.from_message(message, self.clock().date()))
