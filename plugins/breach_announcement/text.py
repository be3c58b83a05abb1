"""Plain notice text made safe for HTML and XML: cleaning, paragraphs, links, breach dates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from markupsafe import Markup, escape

#: Fact names read for the breach's dates, in order of preference.
BREACH_START_FACTS = ("breach_started", "breach_started_at", "breach_start")
BREACH_END_FACTS = ("breach_ended", "breach_ended_at", "breach_end")
BREACH_TEXT_FACTS = ("breach_window", "exposure_window")

# Characters XML 1.0 forbids; hostile or corrupted text must not break the page or the feed.
_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}。、])"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
)


def clean(text: str) -> str:
    """``text`` without characters that are invalid in XML (NUL, C0 controls, lone surrogates)."""
    return _INVALID.sub("", text)


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


def paragraphs(text: str) -> Markup:
    """``text`` as HTML paragraphs: blank lines separate paragraphs, newlines become <br>."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", clean(text)) if b.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(linkify(line) for line in b.split("\n")))
        for b in blocks
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
    """The date or range of the breach from the incident facts, or None when not known."""
    start = next((d for k in BREACH_START_FACTS if (d := _date_of(facts.get(k)))), None)
    end = next((d for k in BREACH_END_FACTS if (d := _date_of(facts.get(k)))), None)
    if start and end and end != start:
        return f"{start.isoformat()} – {end.isoformat()}"
    only = start or end
    if only:
        return only.isoformat()
    text = next((facts[k] for k in BREACH_TEXT_FACTS if isinstance(facts.get(k), str)), None)
    return clean(text) if text else None


def slugify(text: str, fallback: str = "notice") -> str:
    """A safe path segment: lower-case ASCII letters, digits and single hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80].strip("-")
    return slug or fallback
