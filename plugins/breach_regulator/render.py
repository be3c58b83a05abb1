"""The report as a printable HTML document (A4, no script, readable without the styles)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup


@cache
def _template() -> jinja2.Template:
    # Our own template, loaded from the package; autoescape makes every value data.
    source = resources.files(__package__).joinpath("report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)


def render_report(report: dict[str, Any]) -> str:
    """The HTML rendering of ``report`` (a ``build_report(...).data``)."""
    locale = str(report.get("notice_language") or "en")
    # the labels are English; the notice's own text keeps its language for screen readers
    lang_attr = Markup(' lang="{}"').format(locale) if locale.split("-")[0].lower() != "en" else ""
    return _template().render(r=report, lang_attr=lang_attr)
