"""Fixture notifier that fails with the recipient's number in its error (tests log masking)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from orchestrator.plugin import Message, Mode, Notifier, Receipt, hookimpl


class LeakySms(Notifier):
    name = "leaky-sms"
    channel = "sms"
    contact = "phone"
    max_batch = 5
    default_rate = 10_000.0
    modes: ClassVar[list[str]] = []

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {"to": message.address}

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        LeakySms.modes.append(mode)
        raise RuntimeError(f"gateway refused {batch[0].address} for {batch[0].notice.contact}")


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    register(LeakySms)
