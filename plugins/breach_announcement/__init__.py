"""Public announcement notifier for breach-orchestrator (``announcement-page``).

Publishes the substitute notice as accessible pages (one per locale) and an Atom feed entry.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, hookimpl

from .notifier import PublicAnnouncement

__all__ = ["PublicAnnouncement"]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the announcement notifier."""
    register(PublicAnnouncement)
