"""The dry-run outbox: every message the campaign would send, exactly as its provider would get it.

Layout::

    OUTBOX/summary.json              counts, skipped reasons, conditions, deadlines, ETAs
    OUTBOX/<channel>.jsonl           one line per message: delivery key, recipient, payload
    OUTBOX/notices.jsonl             each rendered notice once (per step and locale, or per
                                     person when the templates are personal); messages refer
                                     to it by id, so short channels still show the full notice
    OUTBOX/previews/<step>--<channel>--<locale>.html   one preview per distinct combination
    OUTBOX/index.html                links to every preview

The outbox holds personal data (addresses, names): treat it like the audience file itself.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .message import RenderedNotice


class Outbox:
    """Writes JSONL per channel and one HTML preview per (step, channel, locale)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "previews").mkdir(exist_ok=True)
        for old in [*folder.glob("*.jsonl"), *folder.glob("previews/*.html")]:
            old.unlink()  # a second dry-run into the same folder must not mix campaigns
        self._files: dict[str, IO[str]] = {}
        self.previews: dict[tuple[str, str, str], str] = {}
        self._shared_notices: set[str] = set()

    def write(self, channel: str, record: Mapping[str, Any]) -> None:
        handle = self._files.get(channel)
        if handle is None:
            handle = (self.folder / f"{_safe(channel)}.jsonl").open("w", encoding="utf-8")
            self._files[channel] = handle
        handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str))
        handle.write("\n")

    def notice(self, notice_id: str, notice: RenderedNotice, *, shared: bool) -> None:
        """Write a rendered notice once; ``shared`` ones are remembered (few), personal ones not."""
        if shared:
            if notice_id in self._shared_notices:
                return
            self._shared_notices.add(notice_id)
        self.write("notices", {"id": notice_id, **asdict(notice)})

    def wants_preview(self, step_id: str, channel: str, locale: str) -> bool:
        return (step_id, channel, locale) not in self.previews

    def preview(self, step_id: str, channel: str, locale: str, page: str) -> None:
        name = f"{_safe(step_id)}--{_safe(channel)}--{_safe(locale)}.html"
        (self.folder / "previews" / name).write_text(page, encoding="utf-8")
        self.previews[(step_id, channel, locale)] = f"previews/{name}"

    def close(self, summary: Mapping[str, Any]) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        (self.folder / "summary.json").write_text(
            json.dumps(summary, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
        )
        items = "".join(
            f'<li><a href="{html.escape(path)}">{html.escape(step)} · {html.escape(channel)} · '
            f"{html.escape(locale)}</a></li>"
            for (step, channel, locale), path in sorted(self.previews.items())
        )
        title = html.escape(f"Dry-run outbox: {summary.get('incident', '')}")
        (self.folder / "index.html").write_text(
            f'<!doctype html><html lang="en"><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><h1>{title}</h1><ul>{items}</ul></html>\n",
            encoding="utf-8",
        )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
