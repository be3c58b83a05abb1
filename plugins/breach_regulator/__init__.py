"""Regulator filing notifier for breach-orchestrator (``regulator-filing``).

Files the report the regulator's regime asks for (GDPR Art. 33(3), NIS2, SEC 8-K Item 1.05,
HHS, the California AG sample notice, ...), built by the core, as JSON and printable HTML.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, hookimpl
from orchestrator.plugin.reports import NOT_YET_KNOWN, ReportError, build_report

from .notifier import RegulatorReport

__all__ = ["NOT_YET_KNOWN", "RegulatorReport", "ReportError", "build_report"]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the regulator filing notifier."""
    register(RegulatorReport)
