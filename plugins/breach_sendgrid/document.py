"""The e-mail notice as a document: its fields, and its HTML and plain-text renderings.

Every value comes from the rendered notice, the incident or the organisation and is *data*: the
HTML template (ours, shipped with the plugin) autoescapes it and never compiles it. Section text
becomes paragraphs; web and e-mail addresses in it become links (http, https and mailto only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape

from orchestrator.message import Message

from .labels import direction, labels_for

#: Fact names read for the breach's dates, in order of preference.
BREACH_START_FACTS = ("breach_started", "breach_started_at", "breach_start")
BREACH_END_FACTS = ("breach_ended", "breach_ended_at", "breach_end")
BREACH_TEXT_FACTS = ("breach_window", "exposure_window")

_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}。、])"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
)
_P_STYLE = "margin:0 0 12px;"


@dataclass(frozen=True)
class Section:
    """One headed section of the notice."""

    key: str
    heading: str
    text: str


@dataclass(frozen=True)
class EmailDocument:
    """Everything the e-mail shows, as plain text, before any layout."""

    locale: str
    dir: str
    labels: Mapping[str, str]
    subject: str
    organisation: str
    address: str | None
    reference: str
    notice_date: str
    breach_dates: str | None
    sections: tuple[Section, ...]

    @classmethod
    def from_message(cls, message: Message, today: date) -> EmailDocument:
        """The document for one message; ``today`` is the notice's date."""
        notice = message.notice
        labels = labels_for(notice.locale)
        org = message.incident.organisation
        return cls(
            locale=notice.locale,
            dir=direction(notice.locale),
            labels=labels,
            subject=clean(notice.subject),
            organisation=clean(str(org.get("name") or "")),
            address=clean(str(org["address"])) if org.get("address") else None,
            reference=clean(message.incident.incident_id),
            notice_date=today.isoformat(),
            breach_dates=breach_dates(message.incident.facts),
            sections=tuple(
                Section(key, labels[key], clean(text)) for key, text in notice.sections()
            ),
        )

    def field(self, name: str) -> str:
        """The text of ``subject`` or of a section, by key."""
        if name == "subject":
            return self.subject
        return next(s.text for s in self.sections if s.key == name)

    def layout_key(self) -> tuple[str, ...]:
        """What must be equal for two documents to share one HTML layout."""
        return (self.locale, self.organisation, self.reference, *(s.key for s in self.sections))


def clean(text: str) -> str:
    """``text`` without characters that are invalid in XML/HTML (NUL, C0 controls)."""
    return _INVALID.sub("", text)


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


def linkify(text: str) -> Markup:
    """Escaped ``text`` with web and e-mail addresses made into links."""
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
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    return Markup("\n").join(
        Markup('<p style="{}">{}</p>').format(
            _P_STYLE, Markup("<br>\n").join(linkify(line) for line in b.split("\n"))
        )
        for b in blocks
    )


@cache
def _environment() -> jinja2.Environment:
    # Our own template, loaded from the package; autoescape makes every value data.
    source = resources.files(__package__).joinpath("email.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"email.html": source}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render_html(
    doc: EmailDocument,
    bodies: Mapping[str, Markup] | None = None,
    subject: str | Markup | None = None,
) -> str:
    """The HTML part. ``bodies`` replaces section bodies (substitution tags in batches)."""
    bodies = bodies or {}
    sections = [(s.heading, bodies.get(s.key) or paragraphs(s.text)) for s in doc.sections]
    template = _environment().get_template("email.html")
    return template.render(
        doc=doc, sections=sections, subject=doc.subject if subject is None else subject
    )


def render_text(doc: EmailDocument, bodies: Mapping[str, str] | None = None) -> str:
    """The text/plain part, in the same order and with the same headings as the HTML."""
    bodies = bodies or {}
    lines = [doc.organisation, "", doc.labels["title"], ""]
    lines.append(f"{doc.labels['notice_date']}: {doc.notice_date}")
    if doc.breach_dates:
        lines.append(f"{doc.labels['breach_date']}: {doc.breach_dates}")
    for s in doc.sections:
        lines += ["", s.heading, bodies.get(s.key, s.text)]
    footer = doc.organisation + (f" · {doc.address}" if doc.address else "")
    lines += ["", "--", footer, f"{doc.labels['reference']}: {doc.reference}", ""]
    return "\n".join(lines)


def template_data(doc: EmailDocument) -> dict[str, Any]:
    """The document as ``dynamic_template_data`` for a SendGrid dynamic template.

    A template lays it out with Handlebars, whose ``{{ }}`` escapes HTML, e.g.
    ``{{#each sections}}<h2>{{heading}}</h2>{{#each paragraphs}}<p>{{this}}</p>{{/each}}{{/each}}``.
    """
    return {
        "subject": doc.subject,
        "lang": doc.locale,
        "dir": doc.dir,
        "title": doc.labels["title"],
        "labels": dict(doc.labels),
        "organisation": doc.organisation,
        "address": doc.address,
        "reference": doc.reference,
        "notice_date": doc.notice_date,
        "breach_dates": doc.breach_dates,
        "sections": [
            {
                "key": s.key,
                "heading": s.heading,
                "text": s.text,
                "paragraphs": [p.strip() for p in re.split(r"\n\s*\n", s.text) if p.strip()],
            }
            for s in doc.sections
        ],
    }
