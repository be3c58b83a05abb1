"""Regulator filing notifier for breach-orchestrator (``regulator-filing``).

Builds the GDPR Art. 33(3) report (JSON and printable HTML) and files it into a folder.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.plugin import Notifier, hookimpl

from .notifier import RegulatorReport
from .report import NOT_YET_KNOWN, ReportError, build_report

__all__ = ["NOT_YET_KNOWN", "RegulatorReport", "ReportError", "build_report"]


@hookimpl
def register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Register the regulator filing notifier."""
    register(RegulatorReport)
