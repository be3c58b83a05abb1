"""The Firebase Cloud Messaging push notifier.

``send`` turns each message's v1 JSON (the same one a dry run shows) into a
``firebase_admin.messaging.Message`` and sends them with ``send_each_async`` in small calls, a
bounded number at a time over the app's one connection pool (aiohttp's, see
:mod:`.transport`), then classifies each message's own result (see :func:`.live.classify`).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.plugin import (
    BreachError,
    Contact,
    Message,
    Mode,
    Notifier,
    Outcome,
    Receipt,
    Setting,
    direction,
)
from orchestrator.plugin.reasons import mask_reason

from .payload import SEND_PATH, message_json, to_sdk_message

if TYPE_CHECKING:
    from .live import FcmApp

#: Seconds to wait for one answer when FCM_TIMEOUT is not set (the SDK's own default is 120).
DEFAULT_TIMEOUT = 30.0

# Lock screens cut notifications short; these are typical visible lengths, for the preview only.
_VISIBLE_TITLE = 50
_VISIBLE_BODY = 150


class FcmPush(Notifier):
    """Push notifications through the FCM HTTP v1 API (Android, iOS and web apps)."""

    name: ClassVar[str] = "fcm-push"
    channel: ClassVar[str] = "push"
    contact: ClassVar[Contact | None] = "push_token"
    max_batch: ClassVar[int] = 500  # send_each takes at most 500 messages
    #: messages per ``send_each_async`` call, and calls in flight over all of this notifier's
    #: batches. The SDK fires a call's messages all at once over one httpx pool (100
    #: connections, 20 kept alive); requests queued beyond that make httpcore re-scan every
    #: waiter against every connection on each answer (encode/httpcore#1035) and starve the
    #: event loop. Small calls, a bounded number at a time, keep the queue empty while many
    #: batches overlap.
    sub_batch: ClassVar[int] = 25
    calls_in_flight: ClassVar[int] = 4
    # The project quota is 600,000 messages a minute (10,000/s) and the app's own pushes share
    # it: 80% of it leaves them room.
    default_rate: ClassVar[float] = 600_000 / 60 * 0.8
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("FCM_PROJECT_ID", "Firebase project id the app is registered in"),
        Setting(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "Path to a service-account JSON file allowed to send FCM messages",
        ),
        Setting(
            "FCM_ACCESS_TOKEN",
            "A ready OAuth access token used instead of the service-account file (the simulator, "
            "or a token minted elsewhere); it is never refreshed",
            required=False,
            secret=True,
        ),
        Setting(
            "FCM_API_BASE_URL",
            "Base URL replacing https://fcm.googleapis.com (a simulator); leave unset in "
            "production",
            required=False,
        ),
        Setting(
            "FCM_TIMEOUT",
            f"Seconds to wait for FCM's answer to one message (default {DEFAULT_TIMEOUT:g})",
            required=False,
        ),
    )

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(settings)
        self._app: FcmApp | None = None

    def missing_settings(self) -> list[str]:
        """Required settings not set; an access token stands in for the service-account file."""
        missing = super().missing_settings()
        if self.settings.get("FCM_ACCESS_TOKEN"):
            missing = [m for m in missing if m != "GOOGLE_APPLICATION_CREDENTIALS"]
        return missing

    def path(self) -> str:
        """The send path under https://fcm.googleapis.com."""
        project = self.settings.get("FCM_PROJECT_ID") or "<FCM_PROJECT_ID>"
        return SEND_PATH.format(project=project)

    def build_payload(self, message: Message) -> dict[str, Any]:
        """``{"path", "validate_only", "message"}``: the v1 send path and its JSON body."""
        return {
            "path": self.path(),
            # sandbox: FCM validates the message (and the token) without delivering it
            "validate_only": message.incident.mode == "sandbox",
            "message": message_json(message),
        }

    def shared_payload(self, message: Message) -> dict[str, Any]:
        """The request without the device: path, mode and the notification itself."""
        payload = self.build_payload(message)
        body = {k: v for k, v in payload["message"].items() if k != "token"}
        body["data"] = {k: v for k, v in body["data"].items() if k != "delivery_id"}
        return {**payload, "message": body}

    def personal_payload(self, message: Message) -> list[str | None]:
        """The push token and the delivery id."""
        return [message.address, message.delivery_id]

    def sdk_message(self, message: Message) -> Any:
        """The ``firebase_admin.messaging.Message`` for this delivery (imports the SDK)."""
        return to_sdk_message(message_json(message))

    def preview_html(self, message: Message) -> str:
        """The notification as a lock-screen card, with the lengths that may be cut."""
        n = message.notice
        lang = html.escape(n.locale, quote=True)
        org = html.escape(str(message.incident.organisation.get("name") or ""))
        notes = []
        if len(n.subject) > _VISIBLE_TITLE:
            notes.append(f"title is {len(n.subject)} characters; about {_VISIBLE_TITLE} show")
        if len(n.push) > _VISIBLE_BODY:
            notes.append(f"body is {len(n.push)} characters; about {_VISIBLE_BODY} show")
        warn = "".join(f'<p class="warn">{html.escape(x)}</p>' for x in notes)
        return (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Push notification preview</title><style>"
            "body{font-family:system-ui,sans-serif;background:#3b4252;padding:2rem 1rem}"
            ".card{max-width:24rem;margin:auto;background:#f5f5f7;border-radius:1rem;"
            "padding:.8rem 1rem;overflow-wrap:anywhere}.app{font-size:.75rem;color:#444}"
            ".title{font-weight:bold;margin:.2rem 0}.body{margin:0;white-space:pre-wrap}"
            ".warn{max-width:24rem;margin:1rem auto;color:#fff}"
            "</style></head><body>"
            f'<section class="card" aria-label="Push notification" lang="{lang}" '
            f'dir="{direction(n.locale)}"><p class="app">{org}</p>'
            f'<p class="title">{html.escape(n.subject)}</p>'
            f'<p class="body">{html.escape(n.push)}</p></section>{warn}</body></html>'
        )

    # -- live sending ------------------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds to wait for one answer (FCM_TIMEOUT, default 30)."""
        return self.seconds_setting("FCM_TIMEOUT", DEFAULT_TIMEOUT)

    def app(self) -> FcmApp:
        """This notifier's firebase app, initialised on first use on the running event loop."""
        from .live import open_app  # the SDK loads only when something is really sent

        if self._app is None or not self._app.usable():
            # An app whose HTTP client ran on an earlier event loop cannot be used (nor closed)
            # from this one: a new app takes over.
            self._app = open_app(self.settings, self.timeout())
        return self._app

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Send in calls of ``sub_batch``; one receipt per message, in the batch's order.

        Sandbox mode sends with ``dry_run=True``: FCM validates message and token and delivers
        nothing. Provider answers never raise; missing or unusable credentials raise
        :class:`ConfigurationError` before anything is sent.
        """
        receipts: dict[int, Receipt] = {}
        ready: list[tuple[int, Message, Any]] = []
        app = None if mode == "dry-run" else self.app()
        for index, message in enumerate(batch):
            try:
                body = message_json(message)
                sdk_message = None if app is None else _checked(to_sdk_message(body))
            except (BreachError, ValueError) as exc:
                error = mask_reason(str(exc))
                receipts[index] = Receipt(message.delivery_id, Outcome.PERMANENT, error=error)
                continue
            if app is None:  # dry-run: built and checked, nothing leaves the machine
                receipts[index] = Receipt(message.delivery_id, Outcome.SENT)
            else:
                ready.append((index, message, sdk_message))
        if app is not None:
            size = min(self.sub_batch, self.max_batch)
            chunks = [ready[start : start + size] for start in range(0, len(ready), size)]
            sent = await asyncio.gather(
                *(self._send_chunk(app, chunk, dry_run=mode == "sandbox") for chunk in chunks)
            )
            for answered in sent:
                receipts.update(answered)
        return [receipts[i] for i in range(len(batch))]

    async def _send_chunk(
        self, app: FcmApp, chunk: list[tuple[int, Message, Any]], *, dry_run: bool
    ) -> dict[int, Receipt]:
        import firebase_admin.exceptions
        from firebase_admin import messaging

        from .live import classify, uncertain

        try:
            async with app.calls(self.calls_in_flight):
                result = await messaging.send_each_async(
                    [m for _, _, m in chunk], dry_run=dry_run, app=app.app
                )
        except firebase_admin.exceptions.FirebaseError as exc:
            # the SDK wraps what broke the whole chunk (credentials that cannot be refreshed...)
            outcome, reason, delay = classify(exc, self.timeout())
            maybe = uncertain(exc)
            return {i: Receipt(m.delivery_id, outcome, None, reason, delay, uncertain=maybe)
                    for i, m, _ in chunk}  # fmt: skip
        out = {}
        for (index, message, _), response in zip(chunk, result.responses, strict=True):
            if response.success:
                out[index] = Receipt(message.delivery_id, Outcome.SENT, response.message_id)
            else:
                # one request per message: a lost answer makes that message a possible duplicate
                error = response.exception
                outcome, reason, delay = classify(error, self.timeout())
                out[index] = Receipt(message.delivery_id, outcome, None, reason, delay,
                                     uncertain=uncertain(error))  # fmt: skip
        return out

    async def aclose(self) -> None:
        """Close the SDK's HTTP client and delete the app (when made on the running loop)."""
        app, self._app = self._app, None
        if app is not None and app.usable():
            await app.aclose()


def _checked(sdk_message: Any) -> Any:
    """``sdk_message`` once the SDK's encoder accepts it.

    ``send_each_async`` encodes every message before sending any and raises on the first it
    refuses, which would fail the whole chunk for one bad message; encoding each here first
    keeps the failure to that message.
    """
    from firebase_admin import messaging

    messaging._MessagingService.encode_message(sdk_message)
    return sdk_message
