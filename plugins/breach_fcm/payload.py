"""The FCM HTTP v1 request for one push notification, and its firebase_admin equivalent.

The JSON is built without the SDK; :func:`to_sdk_message` turns the same JSON into the
``firebase_admin.messaging.Message`` the live path sends, and the tests check that the SDK's own
encoder gives back exactly this JSON.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from orchestrator.plugin import BreachError, Message

SEND_PATH = "/v1/projects/{project}/messages:send"
#: FCM rejects notification messages whose payload exceeds 4,096 bytes.
MAX_MESSAGE_BYTES = 4096


class PushTooLarge(BreachError):
    """The notification and data exceed what FCM accepts in one message."""


def message_json(message: Message) -> dict[str, Any]:
    """The ``message`` object of the FCM v1 send request for one delivery."""
    if not message.address:
        raise ValueError(f"delivery {message.delivery_id} has no push token to send to")
    notice = message.notice
    body: dict[str, Any] = {
        "token": message.address,
        "notification": {"title": notice.subject, "body": notice.push},
        # data values must be strings: the app routes the tap to the incident's notice
        "data": {
            "incident_id": message.incident.incident_id,
            "delivery_id": message.delivery_id,
            "step_id": message.step_id,
            "locale": notice.locale,
        },
        # "high" wakes a dozing Android device now; a breach notice should not wait for the
        # next maintenance window
        "android": {"priority": "high"},
        # apns-priority 10 = deliver immediately with an alert and a sound
        "apns": {
            "headers": {"apns-priority": "10"},
            "payload": {"aps": {"sound": "default"}},
        },
    }
    size = _json_size_of_notification(notice.subject, notice.push) + _json_size(body["data"])
    if size > MAX_MESSAGE_BYTES:
        raise PushTooLarge(
            f"the push notification for locale {notice.locale!r} is {size} bytes; FCM accepts "
            f"{MAX_MESSAGE_BYTES}: shorten the notice's `subject` or `push` text"
        )
    return body


@functools.lru_cache(maxsize=256)
def _json_size_of_notification(title: str, body: str) -> int:
    # the same for every message of a notice: measured once, not once per message
    return _json_size({"title": title, "body": body})


def _json_size(value: dict[str, Any]) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def to_sdk_message(body: dict[str, Any]) -> Any:
    """``firebase_admin.messaging.Message`` equal to ``body`` (a :func:`message_json` result).

    Imports the SDK, so only the live path calls it.
    """
    from firebase_admin import messaging

    apns = body["apns"]
    sdk_message = messaging.Message(
        notification=messaging.Notification(
            title=body["notification"]["title"], body=body["notification"]["body"]
        ),
        data=dict(body["data"]),
        android=messaging.AndroidConfig(priority=body["android"]["priority"]),
        apns=messaging.APNSConfig(
            headers=dict(apns["headers"]),
            payload=messaging.APNSPayload(aps=messaging.Aps(sound=apns["payload"]["aps"]["sound"])),
        ),
    )
    # firebase-admin 7.7 deprecates Message.token in favour of installation ids (fid), and its
    # constructor warns when given one; the registration tokens our audiences hold are still
    # sent as "token" by the v1 API. Set after construction: no warning, and no per-message
    # catch_warnings (which resets the process's warning filters every time).
    sdk_message.token = body["token"]
    return sdk_message
