"""The public announcement notifier: a notice page per locale and an Atom feed, as files.

Live publication writes into ``BREACH_PUBLISH_DIR``, which a web server (or a static-site sync)
serves as is::

    <dir>/feed.atom                 every published update, newest first
    <dir>/<slug>/<locale>.html      the notice in each locale
    <dir>/<slug>/index.html         the notice in the playbook's default locale
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from markupsafe import Markup

from orchestrator.plugin import Contact, Message, Mode, Notifier, Receipt, Setting
from orchestrator.plugin.files import atomic_write, exclusive, setting_folder, write_each
from orchestrator.plugin.textblocks import clean, paragraphs

from .feed import (
    FeedMeta,
    Link,
    build_entry,
    entry_id,
    feed_id,
    merge,
    parse_time,
    render_feed,
)
from .labels import labels_for
from .page import FEED_FILE, notices_of, page_file, render_pages

log = logging.getLogger(__name__)

#: Published files are served by a web server running as another user: world-readable.
PUBLISHED_MODE = 0o644


class PublicAnnouncement(Notifier):
    """Publishes the notice as web pages and an Atom feed entry (substitute notice)."""

    name: ClassVar[str] = "announcement-page"
    channel: ClassVar[str] = "announcement"
    contact: ClassVar[Contact | None] = None  # one message per step, every locale in it
    max_batch: ClassVar[int] = 1
    default_rate: ClassVar[float] = 1.0  # a handful of publications per incident
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("BREACH_PUBLISH_DIR", "Folder the public web server serves the notices from"),
        Setting(
            "BREACH_PUBLIC_BASE_URL",
            "Public URL of that folder (makes feed links absolute), e.g. "
            "https://example.com/security/notices",
            required=False,
        ),
    )

    # -- what is published -----------------------------------------------------------------

    @staticmethod
    def slug(message: Message) -> str:
        """The incident's folder name: its id made path-safe (never ``..`` or ``/``)."""
        incident_id = message.incident.incident_id
        fallback = "incident-" + hashlib.sha256(incident_id.encode()).hexdigest()[:12]
        return slugify(incident_id, fallback=fallback)

    def _href(self, relative: str) -> str:
        base = self.settings.get("BREACH_PUBLIC_BASE_URL")
        return f"{base.rstrip('/')}/{relative}" if base else relative

    def _meta(self, message: Message) -> FeedMeta:
        org = message.incident.organisation
        name = clean(str(org.get("name") or ""))
        labels = labels_for(message.notice.locale)
        base = self.settings.get("BREACH_PUBLIC_BASE_URL")
        return FeedMeta(
            id=feed_id(base or name),
            title=f"{name}: {labels['feed_title']}",
            author=name,
            lang=message.notice.locale,
            author_uri=str(org["website"]) if org.get("website") else None,
            self_href=self._href(FEED_FILE) if base else None,
        )

    def _entry(self, message: Message, now: datetime) -> ET.Element:
        notice = message.notice
        labels = labels_for(notice.locale)
        slug = self.slug(message)
        content = Markup("\n").join(
            Markup("<h2>{}</h2>\n{}").format(labels[key], paragraphs(text))
            for key, text in notice.sections()
        )
        return build_entry(
            id=entry_id(message.incident.incident_id, message.step_id),
            title=clean(notice.subject),
            summary=clean(notice.impact),
            content_html=str(content),
            lang=notice.locale,
            links=[
                Link(self._href(f"{slug}/{page_file(loc)}"), loc) for loc in notices_of(message)
            ],
            published=now,
            updated=now,
        )

    def build_payload(self, message: Message) -> dict[str, Any]:
        """``{"slug", "entry_id", "pages": {locale: html}, "feed": atom}`` of this update.

        ``feed`` holds only this update's entry; publishing merges it into the live feed.
        """
        now = self.clock()
        entry = self._entry(message, now)
        return {
            "slug": self.slug(message),
            "entry_id": entry_id(message.incident.incident_id, message.step_id),
            "pages": render_pages(message, published=now, updated=now),
            "feed": render_feed(self._meta(message), [entry]),
        }

    def preview_html(self, message: Message) -> str:
        """The page in the default locale, as it will be published."""
        now = self.clock()
        return render_pages(message, published=now, updated=now)[message.notice.locale]

    # -- publication -------------------------------------------------------------------------

    def _folder(self) -> Path:
        return setting_folder(self, "BREACH_PUBLISH_DIR", "publish the notice")

    def publish(self, message: Message) -> str:
        """Write the pages and merge the feed entry; returns the index page's relative path."""
        folder = self._folder()
        slug = self.slug(message)
        feed_path = folder / FEED_FILE
        with exclusive(folder / f".{FEED_FILE}.lock"):
            existing = _read(feed_path)
            meta = self._meta(message)
            try:
                feed_xml, entry = merge(existing, meta, self._entry(message, self.clock()))
            except ET.ParseError:
                # Never let a damaged feed block a breach notice: keep it aside for a human.
                broken = feed_path.with_name(f"{FEED_FILE}.broken")
                os.replace(feed_path, broken)
                log.error("feed unreadable, moved aside", extra={"path": str(broken)})
                feed_xml, entry = merge(None, meta, self._entry(message, self.clock()))
            published = parse_time(entry.findtext("published", ""))
            updated = parse_time(entry.findtext("updated", ""))
            pages = render_pages(message, published=published, updated=updated)
            # pages first: the feed must never announce a page that is not there yet
            for locale, page in pages.items():
                data = page.encode("utf-8")
                atomic_write(folder / slug / page_file(locale), data, PUBLISHED_MODE)
            index = pages[message.notice.locale].encode()
            atomic_write(folder / slug / "index.html", index, PUBLISHED_MODE)
            atomic_write(feed_path, feed_xml.encode("utf-8"), PUBLISHED_MODE)
        return f"{slug}/index.html"

    def _check_writable(self) -> None:
        folder = self._folder()
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # publish() creates the missing folders under it
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "publish folder is not writable", str(folder))

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Live: publish each message. Sandbox: build it and check the folder is writable.

        Dry-run writes nothing (the core's outbox holds the payload).
        """

        async def deliver(message: Message) -> str:
            if mode == "live":
                return await asyncio.to_thread(self.publish, message)
            self.build_payload(message)
            if mode == "sandbox":
                await asyncio.to_thread(self._check_writable)
            return f"{self.slug(message)}/index.html"

        return await write_each(batch, deliver)


def slugify(text: str, fallback: str = "notice") -> str:
    """A safe path segment: lower-case ASCII letters, digits and single hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80].strip("-")
    return slug or fallback


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None
