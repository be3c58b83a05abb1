"""Every hook a breach plugin can implement. One module, one marker, verbs for names.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` (re-exported as
``orchestrator.plugin.hookimpl``) whose names match the specifications below. Call hooks with
keyword arguments only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .audience import AudienceSourceFactory
    from .events import IncidentEvent
    from .message import Message
    from .notifier import Notifier
    from .receipts import ReceiptHandler

hookspec = pluggy.HookspecMarker("breach")
#: marks a plugin's implementation of one of the hooks below
hookimpl = pluggy.HookimplMarker("breach")


@hookspec
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register notifier classes: ``register(MyNotifier)``. Each serves one channel."""


@hookspec
def register_audience_sources(register: Callable[[str, AudienceSourceFactory], None]) -> None:
    """Register audience sources by scheme: ``register("csv", factory)``.

    ``--audience SCHEME:TARGET`` opens ``factory(TARGET, options)``.
    """


@hookspec
def register_receipts(register: Callable[[str, ReceiptHandler], None]) -> None:
    """Register delivery-receipt handlers: ``register("twilio", handler)``.

    The server mounts each at ``POST /receipts/<name>``; the handler validates the provider's
    signature (with the resolved settings of its plugin's notifiers, ``request.settings``) and
    returns ``ReceiptUpdate``s, each with a ``ReceiptOutcome``, or raises ``ReceiptRejected``.
    """


@hookspec
def incident_event(event: IncidentEvent) -> None:
    """Observe the incident timeline (triggered, step fired/skipped, approved, finished...).

    Observers must not raise; an exception is logged with the plugin's name and ignored.
    """


@hookspec(firstresult=True)
def before_send(message: Message) -> str | None:
    """Veto one message: return a reason (the delivery is recorded ``skipped`` with it) or None."""


def hook_names() -> list[str]:
    """The names of all hooks, for the plugin listing and the documentation test."""
    return sorted(
        name
        for name, value in globals().items()
        if callable(value) and hasattr(value, "breach_spec")
    )
