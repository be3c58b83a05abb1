"""Firebase Cloud Messaging notifier for breach-orchestrator (``fcm-push``).

Payload building needs no firebase_admin; the SDK is imported only where live sending happens.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, hookimpl

from .notifier import FcmPush
from .payload import PushTooLarge, message_json, to_sdk_message

__all__ = ["FcmPush", "PushTooLarge", "message_json", "to_sdk_message"]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the push notifier."""
    register(FcmPush)
