"""Notice text made safe for the documents plugins render: HTML pages, e-mails, feeds, reports.

A rendered notice is plain text from the playbook, and incident facts and organisation details
are data too; none of it is ever compiled as a template. These helpers turn it into the pieces
those documents share:

- :func:`clean` drops characters XML 1.0 forbids (NUL, C0 controls, lone surrogates), so hostile
  or corrupted text cannot break a page, a feed or a TwiML document;
- :func:`split_paragraphs` and :func:`paragraphs` read blank lines as paragraph breaks;
  :func:`linkify` makes web and e-mail addresses links (http, https and mailto only);
- :func:`breach_dates` reads the breach's date or date range from the incident facts;
- :func:`package_template` loads a plugin's own Jinja template with autoescaping, so every value
  it shows is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..facts import BREACH_END_FACTS, BREACH_START_FACTS

__all__ = [
    "BREACH_END_FACTS",
    "BREACH_START_FACTS",
    "BREACH_TEXT_FACTS",
    "breach_dates",
    "clean",
    "linkify",
    "package_template",
    "paragraphs",
    "split_paragraphs",
]

BREACH_TEXT_FACTS = ("breach_window", "exposure_window")

_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A URL ends before trailing punctuation, so "see https://example.com." links without the dot.
_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}。、])"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
)


def clean(text: str) -> str:
    """``text`` without characters that are invalid in XML (NUL, C0 controls, lone surrogates)."""
    return _INVALID.sub("", text)


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text`` (cleaned): blank lines separate them; empty ones are dropped."""
    return [block.strip() for block in _PARAGRAPH_BREAK.split(clean(text)) if block.strip()]


def linkify(text: str) -> Markup:
    """Escaped ``text`` with web and e-mail addresses made into links (http, https, mailto)."""
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(escape(text[pos : m.start()]))
        target = m.group("url") or f"mailto:{m.group('email')}"
        out.append(Markup('<a href="{}">{}</a>').format(target, m.group(0)))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def paragraphs(text: str, style: str | None = None) -> Markup:
    """``text`` as HTML paragraphs: blank lines separate paragraphs, newlines become <br>.

    ``style`` becomes each paragraph's ``style`` attribute (e-mail clients ignore style sheets).
    """
    opening = Markup('<p style="{}">').format(style) if style else Markup("<p>")
    closing = Markup("</p>")
    return Markup("\n").join(
        opening + Markup("<br>\n").join(linkify(line) for line in block.split("\n")) + closing
        for block in split_paragraphs(text)
    )


def _date_of(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def breach_dates(facts: Mapping[str, Any]) -> str | None:
    """The date or range of the breach from the incident facts, or None when not known.

    Start and end dates (:data:`BREACH_START_FACTS`, :data:`BREACH_END_FACTS`) give
    ``2025-03-12 – 2025-03-13``, or one date; failing both, a free-text window
    (:data:`BREACH_TEXT_FACTS`) is shown as written.
    """
    start = next((d for k in BREACH_START_FACTS if (d := _date_of(facts.get(k)))), None)
    end = next((d for k in BREACH_END_FACTS if (d := _date_of(facts.get(k)))), None)
    if start and end and end != start:
        return f"{start.isoformat()} – {end.isoformat()}"
    only = start or end
    if only:
        return only.isoformat()
    text = next((facts[k] for k in BREACH_TEXT_FACTS if isinstance(facts.get(k), str)), None)
    return clean(text) if text else None


@cache
def package_template(package: str, name: str) -> jinja2.Template:
    """The Jinja template ``name`` shipped in ``package``, loaded once.

    Autoescaping makes every value data, and StrictUndefined makes a misspelt variable an error
    instead of a blank. Only a plugin's own template files belong here: notice text never
    becomes a template.
    """
    source = resources.files(package).joinpath(name).read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)
