"""The report as a printable HTML document (A4, no script, readable without the styles)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from orchestrator.plugin import language
from orchestrator.plugin.textblocks import package_template


def render_report(report: dict[str, Any]) -> str:
    """The HTML rendering of ``report`` (a ``build_report(...).data``)."""
    locale = str(report.get("notice_language") or "en")
    # the labels are English; the notice's own text keeps its language for screen readers
    lang_attr = Markup(' lang="{}"').format(locale) if language(locale) != "en" else ""
    return package_template(__package__, "report.html.j2").render(r=report, lang_attr=lang_attr)
