"""Fixture plugin: vetoes messages to recipients whose id ends in 7."""

from __future__ import annotations

from orchestrator.plugin import Message, hookimpl


@hookimpl
def before_send(message: Message) -> str | None:
    if message.recipient is not None and message.recipient.id.endswith("7"):
        return "recipient asked for postal notice only"
    return None
