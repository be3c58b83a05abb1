"""The Atom feed (RFC 4287) of published notices: one entry per incident and step.

Entry ids are ``urn:uuid`` names derived from the incident and step ids, so publishing the same
step again replaces its entry instead of adding one. Merging keeps every other entry as it was.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .page import rfc3339

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://breach-orchestrator.dev/atom")


def _q(tag: str) -> str:
    # Elements are kept unqualified and the root declares Atom as the default namespace; a
    # parsed feed is brought to the same form by _local(). No global namespace registry.
    return tag


def _local(root: ET.Element) -> ET.Element:
    """``root`` with Atom-qualified tags made local (other namespaces are left as they are)."""
    prefix = f"{{{ATOM_NS}}}"
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.startswith(prefix):
            node.tag = node.tag[len(prefix) :]
    return root


def entry_id(incident_id: str, step_id: str) -> str:
    """The stable id of the entry for one incident's step."""
    name = f"entry\x1f{incident_id}\x1f{step_id}"
    return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"


def feed_id(identity: str) -> str:
    """The stable id of a feed; ``identity`` is its public URL or the organisation's name."""
    name = f"feed\x1f{identity}"
    return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"


@dataclass(frozen=True)
class Link:
    """An alternate representation of an entry (one per locale)."""

    href: str
    hreflang: str


@dataclass(frozen=True)
class FeedMeta:
    """What the feed says about itself."""

    id: str
    title: str
    author: str
    lang: str
    author_uri: str | None = None
    self_href: str | None = None


def build_entry(
    *,
    id: str,
    title: str,
    summary: str,
    content_html: str,
    lang: str,
    links: Sequence[Link],
    published: datetime,
    updated: datetime,
) -> ET.Element:
    """One ``atom:entry``; all text is escaped by the serializer."""
    entry = ET.Element(_q("entry"), {XML_LANG: lang})
    ET.SubElement(entry, _q("id")).text = id
    ET.SubElement(entry, _q("title"), type="text").text = title
    ET.SubElement(entry, _q("published")).text = rfc3339(published)
    ET.SubElement(entry, _q("updated")).text = rfc3339(updated)
    for link in links:
        ET.SubElement(
            entry,
            _q("link"),
            rel="alternate",
            type="text/html",
            hreflang=link.hreflang,
            href=link.href,
        )
    ET.SubElement(entry, _q("summary"), type="text").text = summary
    ET.SubElement(entry, _q("content"), type="html").text = content_html
    return entry


def _text(entry: ET.Element, tag: str) -> str:
    node = entry.find(_q(tag))
    return (node.text or "") if node is not None else ""


def entry_essence(entry: ET.Element) -> tuple[object, ...]:
    """What readers see of an entry, without its times: equal essence = same publication."""
    links = sorted(
        (link.get("rel", ""), link.get("hreflang", ""), link.get("href", ""))
        for link in entry.findall(_q("link"))
    )
    return (
        entry.get(XML_LANG),
        _text(entry, "title"),
        _text(entry, "summary"),
        _text(entry, "content"),
        tuple(links),
    )


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as written in the feed."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def entries_of(feed_xml: str | None) -> list[ET.Element]:
    """The entries of an existing feed document (none when there is no feed yet)."""
    if not feed_xml:
        return []
    return _local(ET.fromstring(feed_xml)).findall(_q("entry"))


def existing_feed_id(feed_xml: str | None) -> str | None:
    """The id of an existing feed document, kept so subscribers never see a new feed."""
    if not feed_xml:
        return None
    node = _local(ET.fromstring(feed_xml)).find(_q("id"))
    return node.text if node is not None and node.text else None


def render_feed(meta: FeedMeta, entries: Sequence[ET.Element]) -> str:
    """The feed document: newest entry first, ``updated`` = the newest entry's."""
    ordered = sorted(entries, key=lambda e: parse_time(_text(e, "updated")), reverse=True)
    feed = ET.Element(_q("feed"), {"xmlns": ATOM_NS, XML_LANG: meta.lang})
    ET.SubElement(feed, _q("id")).text = meta.id
    ET.SubElement(feed, _q("title"), type="text").text = meta.title
    newest = _text(ordered[0], "updated") if ordered else "1970-01-01T00:00:00Z"
    ET.SubElement(feed, _q("updated")).text = newest
    author = ET.SubElement(feed, _q("author"))
    ET.SubElement(author, _q("name")).text = meta.author
    if meta.author_uri:
        ET.SubElement(author, _q("uri")).text = meta.author_uri
    if meta.self_href:
        ET.SubElement(
            feed, _q("link"), rel="self", type="application/atom+xml", href=meta.self_href
        )
    ET.SubElement(feed, _q("generator")).text = "breach-orchestrator"
    feed.extend(ordered)
    ET.indent(feed)
    body = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def merge(existing_xml: str | None, meta: FeedMeta, entry: ET.Element) -> tuple[str, ET.Element]:
    """The feed with ``entry`` added, or replacing the entry with the same id.

    An entry whose essence did not change keeps its ``published`` and ``updated`` times, so
    publishing the same notice twice writes the same bytes. Returns the feed and the entry as
    written (with the times it ended up with).
    """
    new_id = _text(entry, "id")
    kept: list[ET.Element] = []
    for old in entries_of(existing_xml):
        if _text(old, "id") != new_id:
            kept.append(old)
            continue
        _set_time(entry, "published", _text(old, "published"))
        if entry_essence(old) == entry_essence(entry):
            _set_time(entry, "updated", _text(old, "updated"))
    meta_id = existing_feed_id(existing_xml) or meta.id
    final = FeedMeta(meta_id, meta.title, meta.author, meta.lang, meta.author_uri, meta.self_href)
    return render_feed(final, [*kept, entry]), entry


def _set_time(entry: ET.Element, tag: str, value: str) -> None:
    node = entry.find(_q(tag))
    if node is not None and value:
        node.text = value
