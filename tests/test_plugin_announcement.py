"""The announcement plugin: accessible pages per locale, the Atom feed, atomic publication."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import breach_announcement
import pytest
from breach_announcement import PublicAnnouncement
from factories import HOSTILE, ORGANISATION, make_incident, make_notice, make_public_message

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Mode, Notifier, Outcome

A = "{http://www.w3.org/2005/Atom}"
T0 = datetime(2025, 3, 15, 10, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class _Page(HTMLParser):
    """Tags with attributes, headings and text of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2"):
            self._open = tag
            self.headings.append((tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open:
            self.headings[-1] = (self._open, self.headings[-1][1] + data)

    def attrs(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def _page(html: str) -> _Page:
    parser = _Page()
    parser.feed(html)
    parser.close()
    return parser


def _notifier(
    folder: Path | None = None, clock: Clock | None = None, **settings: str
) -> PublicAnnouncement:
    values = {"BREACH_PUBLISH_DIR": str(folder)} if folder else {}
    return PublicAnnouncement({**values, **settings}, clock=clock or Clock())


def _publish(notifier: PublicAnnouncement, *messages: Message) -> list[Any]:
    return list(asyncio.run(notifier.send(list(messages), "live")))


def _entries(feed: str | bytes) -> list[ET.Element]:
    root = ET.fromstring(feed)
    assert root.tag == f"{A}feed"
    return root.findall(f"{A}entry")


def test_plugin_registers_the_announcement_notifier() -> None:
    registered: list[type[Notifier]] = []
    breach_announcement.register_notifiers(register=registered.append)
    assert registered == [PublicAnnouncement]
    assert (PublicAnnouncement.name, PublicAnnouncement.channel) == (
        "announcement-page",
        "announcement",
    )
    assert PublicAnnouncement.contact is None


def test_missing_settings_name_what_is_missing() -> None:
    assert PublicAnnouncement({}).missing_settings() == ["BREACH_PUBLISH_DIR"]
    assert PublicAnnouncement({"BREACH_PUBLISH_DIR": "/srv/notices"}).missing_settings() == []


def test_payload_has_a_page_per_locale_a_feed_and_a_slug() -> None:
    payload = _notifier().build_payload(make_public_message())
    assert set(payload) == {"slug", "entry_id", "pages", "feed"}
    assert payload["slug"] == "inc-2025-0042"
    assert set(payload["pages"]) == {"en", "ja", "ar"}
    (entry,) = _entries(payload["feed"])
    assert entry.findtext(f"{A}id") == payload["entry_id"]


@pytest.mark.parametrize(("locale", "direction"), [("en", "ltr"), ("ja", "ltr"), ("ar", "rtl")])
def test_each_page_is_accessible(locale: str, direction: str) -> None:
    payload = _notifier().build_payload(make_public_message())
    page = _page(payload["pages"][locale])
    html = page.attrs("html")[0]
    assert (html["lang"], html["dir"]) == (locale, direction)
    assert any(m.get("name") == "viewport" for m in page.attrs("meta"))
    assert [level for level, _ in page.headings].count("h1") == 1
    assert [level for level, _ in page.headings].count("h2") == 6
    assert page.attrs("main") and page.attrs("nav")
    assert not page.attrs("script")
    # the language switcher links the other locales, named in their own language
    links = {a["hreflang"]: a["href"] for a in page.attrs("a") if a.get("hreflang")}
    others = {"en", "ja", "ar"} - {locale}
    assert links == {loc: f"{loc}.html" for loc in others}
    assert {a["datetime"] for a in page.attrs("time")} == {"2025-03-15T10:00:00Z"}
    text = "".join(page.text)
    assert "2025-03-12 – 2025-03-13" in text  # dates of the breach


def test_english_page_uses_the_california_headings_and_other_languages_their_own() -> None:
    pages = _notifier().build_payload(make_public_message())["pages"]
    en = [h for _, h in _page(pages["en"]).headings]
    assert en[0] == "Notice of Data Breach"
    assert en[1:] == [
        "What Happened",
        "What Information Was Involved",
        "How This May Affect You",
        "What We Are Doing",
        "What You Can Do",
        "For More Information",
    ]
    assert _page(pages["ja"]).headings[0] == ("h1", "個人データ漏えいに関するお知らせ")
    assert _page(pages["ar"]).headings[0] == ("h1", "إشعار بخرق البيانات")
    assert "العربية" in "".join(_page(pages["en"]).text)


def test_feed_is_atom_with_stable_ids_and_alternates_per_locale() -> None:
    notifier = _notifier(BREACH_PUBLIC_BASE_URL="https://example-health.test/notices/")
    message = make_public_message()
    root = ET.fromstring(notifier.build_payload(message)["feed"])
    for tag in ("id", "title", "updated", "author"):
        assert root.find(f"{A}{tag}") is not None, tag
    self_link = root.find(f"{A}link[@rel='self']")
    assert self_link is not None
    assert self_link.get("href") == "https://example-health.test/notices/feed.atom"
    (entry,) = root.findall(f"{A}entry")
    assert entry.findtext(f"{A}updated") == "2025-03-15T10:00:00Z"
    alternates = {
        link.get("hreflang"): link.get("href")
        for link in entry.findall(f"{A}link[@rel='alternate']")
    }
    assert alternates == {
        loc: f"https://example-health.test/notices/inc-2025-0042/{loc}.html"
        for loc in ("en", "ja", "ar")
    }
    again = notifier.build_payload(make_public_message())["entry_id"]
    other_step = notifier.build_payload(make_public_message(step_id="update-2"))["entry_id"]
    assert entry.findtext(f"{A}id") == again != other_step
    assert again.startswith("urn:uuid:")


def test_hostile_text_is_escaped_in_pages_and_feed() -> None:
    org = {**ORGANISATION, "name": HOSTILE + "\x0b"}
    message = make_public_message(
        incident=make_incident(organisation=org),
        subject=HOSTILE,
        what_happened=HOSTILE + "\x00",
        impact=HOSTILE,
    )
    payload = _notifier().build_payload(message)
    for html in payload["pages"].values():
        page = _page(html)
        assert not page.attrs("script") and not page.attrs("hangup")
        assert "".join(page.text).count(HOSTILE) >= 4
        assert "{{ 7*7 }}" in html
    root = ET.fromstring(payload["feed"])  # control characters removed: still well-formed
    entry = root.findall(f"{A}entry")[0]
    assert entry.findtext(f"{A}title") == HOSTILE
    assert entry.findtext(f"{A}summary") == HOSTILE
    content = _page(entry.findtext(f"{A}content") or "")
    assert not content.attrs("script") and HOSTILE in "".join(content.text)


def test_slug_cannot_escape_the_publish_folder(tmp_path: Path) -> None:
    incident = make_incident(incident_id="../../etc/passwd")
    notifier = _notifier(tmp_path / "site")
    (receipt,) = _publish(notifier, make_public_message(incident=incident))
    assert receipt.provider_id == "etc-passwd/index.html"
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.startswith("site/") for p in written)
    japanese_only = make_incident(incident_id="漏えい")
    assert _notifier().slug(make_public_message(incident=japanese_only)).startswith("incident-")


def test_live_publication_writes_pages_index_and_feed(tmp_path: Path) -> None:
    notifier = _notifier(tmp_path)
    message = make_public_message()
    (receipt,) = _publish(notifier, message)
    assert (receipt.outcome, receipt.provider_id) == (Outcome.SENT, "inc-2025-0042/index.html")
    pages = notifier.build_payload(message)["pages"]
    for locale in ("en", "ja", "ar"):
        assert (tmp_path / "inc-2025-0042" / f"{locale}.html").read_text() == pages[locale]
    assert (tmp_path / "inc-2025-0042" / "index.html").read_text() == pages["en"]
    assert len(_entries((tmp_path / "feed.atom").read_bytes())) == 1
    assert not list(tmp_path.rglob("*.tmp"))
    assert (tmp_path / "feed.atom").stat().st_mode & 0o044 == 0o044  # readable by the server


def test_publishing_again_is_idempotent(tmp_path: Path) -> None:
    clock = Clock()
    notifier = _notifier(tmp_path, clock)
    _publish(notifier, make_public_message())
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    clock.advance(hours=3)
    _publish(notifier, make_public_message())
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_feed_is_updated_in_place(tmp_path: Path) -> None:
    clock = Clock()
    notifier = _notifier(tmp_path, clock)
    _publish(notifier, make_public_message(step_id="initial"))
    clock.advance(hours=1)
    other_incident = make_incident(incident_id="inc-2025-0007")
    _publish(notifier, make_public_message(step_id="initial", incident=other_incident))
    clock.advance(hours=1)
    revised = make_public_message(step_id="initial", measures="We also reset every API key.")
    _publish(notifier, revised)
    clock.advance(hours=1)
    _publish(notifier, make_public_message(step_id="update-1"))

    entries = _entries((tmp_path / "feed.atom").read_bytes())
    ids = [e.findtext(f"{A}id") for e in entries]
    assert len(ids) == len(set(ids)) == 3
    updated = [e.findtext(f"{A}updated", "") for e in entries]
    assert updated == sorted(updated, reverse=True)  # newest first
    notifier_payload = notifier.build_payload(revised)
    (revised_entry,) = [e for e in entries if e.findtext(f"{A}id") == notifier_payload["entry_id"]]
    assert revised_entry.findtext(f"{A}published") == "2025-03-15T10:00:00Z"
    assert revised_entry.findtext(f"{A}updated") == "2025-03-15T12:00:00Z"
    assert "We also reset every API key." in (revised_entry.findtext(f"{A}content") or "")
    page = (tmp_path / "inc-2025-0042" / "en.html").read_text()
    assert "We also reset every API key." not in page  # the latest step's page is update-1
    assert 'datetime="2025-03-15T13:00:00Z"' in page
    root = ET.fromstring((tmp_path / "feed.atom").read_bytes())
    assert root.findtext(f"{A}updated") == "2025-03-15T13:00:00Z"


def test_a_failed_write_leaves_the_old_feed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    notifier = _notifier(tmp_path, clock)
    _publish(notifier, make_public_message(step_id="initial"))
    feed = (tmp_path / "feed.atom").read_bytes()
    real_replace: Callable[..., None] = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if str(dst).endswith("feed.atom"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    clock.advance(hours=1)
    (receipt,) = _publish(notifier, make_public_message(step_id="update-1"))
    assert receipt.outcome is Outcome.TRANSIENT and "No space left" in (receipt.error or "")
    assert (tmp_path / "feed.atom").read_bytes() == feed
    assert not list(tmp_path.rglob("*.tmp"))


def test_concurrent_publishers_lose_no_entry(tmp_path: Path) -> None:
    notifier = _notifier(tmp_path)
    messages = [make_public_message(step_id=f"step-{i}", locales=("en",)) for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(notifier.publish, messages))
    assert len(_entries((tmp_path / "feed.atom").read_bytes())) == 12


def test_a_damaged_feed_is_kept_aside_and_does_not_block_the_notice(tmp_path: Path) -> None:
    (tmp_path / "feed.atom").write_text("<feed><entry>truncated")
    (receipt,) = _publish(_notifier(tmp_path), make_public_message())
    assert receipt.outcome is Outcome.SENT
    assert (tmp_path / "feed.atom.broken").read_text() == "<feed><entry>truncated"
    assert len(_entries((tmp_path / "feed.atom").read_bytes())) == 1


@pytest.mark.parametrize("mode", ["dry-run", "sandbox"])
def test_dry_run_and_sandbox_write_nothing(tmp_path: Path, mode: Mode) -> None:
    notifier = _notifier(tmp_path / "site")
    (receipt,) = asyncio.run(notifier.send([make_public_message()], mode))
    assert receipt.outcome is Outcome.SENT
    assert not (tmp_path / "site").exists()


def test_live_publication_without_a_folder_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="BREACH_PUBLISH_DIR"):
        _publish(_notifier(), make_public_message())


def test_preview_is_the_default_locale_page() -> None:
    notifier = _notifier()
    message = make_public_message(locales=("ja", "en"))
    assert notifier.preview_html(message) == notifier.build_payload(message)["pages"]["ja"]


def test_single_locale_page_has_no_language_switcher() -> None:
    page = _page(_notifier().build_payload(make_public_message(locales=("de",)))["pages"]["de"])
    assert not page.attrs("nav")
    assert page.headings[0] == ("h1", "Benachrichtigung über eine Datenschutzverletzung")


def test_notice_without_optional_sections_still_renders() -> None:
    message = make_public_message(locales=("en",), what_happened=None, data_involved=None)
    page = _page(_notifier().build_payload(message)["pages"]["en"])
    assert next(h for level, h in page.headings if level == "h2") == "How This May Affect You"
    assert make_notice().impact in "".join(page.text)
