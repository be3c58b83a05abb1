"""The public notice page: one accessible HTML page per locale.

Each page carries ``lang`` and ``dir`` (right-to-left for Arabic, Hebrew, ...), a mobile viewport,
one ``h1`` and an ``h2`` per section, the dates of the notice and of the breach, and a language
switcher linking the other locales (``hreflang``). It reads fully without CSS and has no script.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup

from orchestrator.plugin import Message, RenderedNotice, direction
from orchestrator.plugin.textblocks import breach_dates, clean, package_template, paragraphs

from .labels import autonym, labels_for

FEED_FILE = "feed.atom"


@dataclass(frozen=True)
class Alternate:
    """A link to the notice in another locale."""

    locale: str
    href: str
    name: str
    dir: str


@dataclass(frozen=True)
class PageSection:
    """One headed section of the page; ``body`` is escaped HTML."""

    key: str
    heading: str
    body: Markup


@dataclass(frozen=True)
class Page:
    """Everything one locale's page shows."""

    locale: str
    dir: str
    labels: Mapping[str, str]
    subject: str
    description: str
    organisation: str
    address: str | None
    reference: str
    published: str
    published_date: str
    updated: str
    updated_date: str
    breach_dates: str | None
    sections: tuple[PageSection, ...]
    alternates: tuple[Alternate, ...]
    feed_href: str


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with seconds, e.g. ``2025-03-14T09:30:00Z``."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def page_file(locale: str) -> str:
    """The file name of ``locale``'s page, e.g. ``zh-Hans.html`` (never a path)."""
    return (re.sub(r"[^A-Za-z0-9-]", "", locale) or "notice") + ".html"


def notices_of(message: Message) -> dict[str, RenderedNotice]:
    """Every locale's notice, the default (``message.notice``) first."""
    out = {message.notice.locale: message.notice}
    for locale in sorted(message.notices):
        out.setdefault(locale, message.notices[locale])
    return out


def build_page(
    message: Message,
    notice: RenderedNotice,
    *,
    published: datetime,
    updated: datetime,
    feed_href: str = f"../{FEED_FILE}",
) -> Page:
    """The page model of ``notice``, one of ``message``'s locales."""
    labels = labels_for(notice.locale)
    org = message.incident.organisation
    alternates = tuple(
        Alternate(loc, page_file(loc), autonym(loc), direction(loc))
        for loc in notices_of(message)
        if loc != notice.locale
    )
    return Page(
        locale=notice.locale,
        dir=direction(notice.locale),
        labels=labels,
        subject=clean(notice.subject),
        description=clean(" ".join(notice.impact.split()))[:300],
        organisation=clean(str(org.get("name") or "")),
        address=clean(str(org["address"])) if org.get("address") else None,
        reference=clean(message.incident.incident_id),
        published=rfc3339(published),
        published_date=published.astimezone(UTC).date().isoformat(),
        updated=rfc3339(updated),
        updated_date=updated.astimezone(UTC).date().isoformat(),
        breach_dates=breach_dates(message.incident.facts),
        sections=tuple(
            PageSection(key, labels[key], paragraphs(text)) for key, text in notice.sections()
        ),
        alternates=alternates,
        feed_href=feed_href,
    )


def render_page(page: Page) -> str:
    """The page as an HTML document."""
    return package_template(__package__, "page.html.j2").render(page=page)


def render_pages(message: Message, *, published: datetime, updated: datetime) -> dict[str, str]:
    """locale -> HTML document, for every locale of ``message``."""
    return {
        locale: render_page(build_page(message, notice, published=published, updated=updated))
        for locale, notice in notices_of(message).items()
    }
