"""The Firebase Cloud Messaging push notifier."""

from __future__ import annotations

import html
from typing import Any, ClassVar

from orchestrator.message import Message
from orchestrator.notifier import Contact, Notifier, Setting

from .payload import SEND_PATH, message_json, to_sdk_message

_RTL = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug"})
# Lock screens cut notifications short; these are typical visible lengths, for the preview only.
_VISIBLE_TITLE = 50
_VISIBLE_BODY = 150


class FcmPush(Notifier):
    """Push notifications through the FCM HTTP v1 API (Android, iOS and web apps)."""

    name: ClassVar[str] = "fcm-push"
    channel: ClassVar[str] = "push"
    contact: ClassVar[Contact | None] = "push_token"
    max_batch: ClassVar[int] = 500  # send_each takes at most 500 messages
    # The project quota is 600,000 messages a minute (10,000/s) and the app's own pushes share
    # it: 80% of it leaves them room.
    default_rate: ClassVar[float] = 600_000 / 60 * 0.8
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("FCM_PROJECT_ID", "Firebase project id the app is registered in"),
        Setting(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "Path to a service-account JSON file allowed to send FCM messages",
        ),
    )

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

    def sdk_message(self, message: Message) -> Any:
        """The ``firebase_admin.messaging.Message`` for this delivery (imports the SDK)."""
        return to_sdk_message(message_json(message))

    def preview_html(self, message: Message) -> str:
        """The notification as a lock-screen card, with the lengths that may be cut."""
        n = message.notice
        lang = html.escape(n.locale, quote=True)
        direction = "rtl" if n.locale.split("-")[0].lower() in _RTL else "ltr"
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
            f'dir="{direction}"><p class="app">{org}</p>'
            f'<p class="title">{html.escape(n.subject)}</p>'
            f'<p class="body">{html.escape(n.push)}</p></section>{warn}</body></html>'
        )
