"""The Firebase Cloud Messaging push notifier.

``send`` turns each message's v1 JSON (the same one a dry run shows) into a
``firebase_admin.messaging.Message``, has the SDK encode it, and sends each as its own
``messages:send`` request (as ``send_each_async`` does) over the app's one aiohttp pool, a
bounded number in flight (see :mod:`.live`), then classifies each message's own result (see
:func:`.live.classify`).
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
    max_batch: ClassVar[int] = 500  # as send_each: FCM v1 has no batch call, one request each
    #: requests in flight over all of this notifier's batches (its pool's connections)
    in_flight: ClassVar[int] = 100
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
            self._app = open_app(self.settings, self.timeout(), self.in_flight)
        return self._app

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Send each message as its own request; one receipt per message, in the batch's order.

        Sandbox mode sends with ``validate_only``: FCM validates message and token and delivers
        nothing. Provider answers never raise; missing or unusable credentials raise
        :class:`ConfigurationError` before anything is sent.
        """
        receipts: list[Receipt | None] = [None] * len(batch)
        ready: list[tuple[int, Message, Any]] = []
        app = None if mode == "dry-run" else self.app()
        for index, message in enumerate(batch):
            try:
                body = message_json(message)
                encoded = None if app is None else _encoded(to_sdk_message(body))
            except (BreachError, ValueError) as exc:
                error = mask_reason(str(exc))
                receipts[index] = Receipt(message.delivery_id, Outcome.PERMANENT, error=error)
                continue
            if app is None:  # dry-run: built and checked, nothing leaves the machine
                receipts[index] = Receipt(message.delivery_id, Outcome.SENT)
            else:
                ready.append((index, message, encoded))
        if app is not None and ready:
            todo = iter(ready)
            dry_run = mode == "sandbox"

            async def worker() -> None:
                # Workers share the batch's messages (no task per message), each holding one of
                # the pool's slots until the batch is done: batches take slots first come, first
                # served, so the first finishes (and is settled) while later ones still send,
                # rather than all progressing together and finishing at the end.
                async with app.pool.slots:
                    for index, message, encoded in todo:
                        name, error = await app.send(encoded, dry_run=dry_run)
                        receipts[index] = self._receipt(message, name, error)

            await asyncio.gather(*(worker() for _ in range(min(len(ready), self.in_flight))))
        done = [r for r in receipts if r is not None]
        assert len(done) == len(batch), "every message gets its receipt"
        return done

    def _receipt(self, message: Message, name: str | None, error: Exception | None) -> Receipt:
        if error is None:
            return Receipt(message.delivery_id, Outcome.SENT, name)
        from .live import classify, uncertain

        outcome, reason, delay = classify(error, self.timeout())
        # one request per message: a lost answer makes that message a possible duplicate
        return Receipt(message.delivery_id, outcome, None, reason, delay,
                       uncertain=uncertain(error))  # fmt: skip

    async def aclose(self) -> None:
        """Close the app's pool and delete the app (when made on the running loop)."""
        app, self._app = self._app, None
        if app is not None and app.usable():
            await app.aclose()


def _encoded(sdk_message: Any) -> dict[str, Any]:
    """The v1 ``message`` object of ``sdk_message``, by the SDK's own encoder.

    Encoding every message before sending any gives a message the encoder refuses its own
    permanent receipt (a ``ValueError``) before anything leaves.
    """
    from firebase_admin import messaging

    encoded: dict[str, Any] = messaging._MessagingService.encode_message(sdk_message)
    return encoded
