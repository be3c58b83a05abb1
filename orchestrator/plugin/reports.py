"""Regulator reports for plugins: the report a regime asks for, built from a message.

The core owns what a report states (the regimes table's items, the playbook's regulator
notice, the ledger's counts and earlier filings) and its JSON Schema; a filing plugin renders
and delivers it. :func:`build_report` gives the report's JSON (``Report.data``) with what the
commander should know before filing (``warnings``, ``missing`` items, ``schema_errors``).
"""

from __future__ import annotations

from ..reporting import (
    NOT_YET_KNOWN,
    PHASES,
    Report,
    ReportError,
    build_report,
    clean,
    report_phase,
    validate_report,
)

__all__ = ["NOT_YET_KNOWN", "PHASES", "Report", "ReportError", "build_report", "clean",
           "report_phase", "validate_report"]  # fmt: skip
