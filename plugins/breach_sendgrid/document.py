"""The e-mail notice as a document: its fields, and its HTML and plain-text renderings.

Every value comes from the rendered notice, the incident or the organisation and is *data*: the
HTML template (ours, shipped with the plugin) autoescapes it and never compiles it. Section text
becomes paragraphs; web and e-mail addresses in it become links (http, https and mailto only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from markupsafe import Markup

from orchestrator.plugin import Message, direction
from orchestrator.plugin.headings import headings_for
from orchestrator.plugin.textblocks import breach_dates, clean, package_template, split_paragraphs
from orchestrator.plugin.textblocks import paragraphs as _paragraphs

#: Languages whose headings the e-mail is sent in. Mail in any other language gets English
#: headings, Arabic, Chinese and Portuguese included although the core has tables for them:
#: adding one here changes what those people receive.
HEADING_LANGUAGES = frozenset({"en", "ja", "de", "fr", "es"})
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
        labels = headings_for(notice.locale, HEADING_LANGUAGES)
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


def paragraphs(text: str) -> Markup:
    """``text`` as HTML paragraphs, styled inline: e-mail clients ignore style sheets."""
    return _paragraphs(text, style=_P_STYLE)


def render_html(
    doc: EmailDocument,
    bodies: Mapping[str, Markup] | None = None,
    subject: str | Markup | None = None,
) -> str:
    """The HTML part. ``bodies`` replaces section bodies (substitution tags in batches)."""
    bodies = bodies or {}
    sections = [(s.heading, bodies.get(s.key) or paragraphs(s.text)) for s in doc.sections]
    template = package_template(__package__, "email.html.j2")
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
                "paragraphs": split_paragraphs(s.text),
            }
            for s in doc.sections
        ],
    }
