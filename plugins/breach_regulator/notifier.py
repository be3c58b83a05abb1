"""The regulator filing notifier: the regime's report as JSON and printable HTML files.

Live filing writes ``<incident>-<regulator>-<step>.json`` and ``.html`` into
``BREACH_FILING_DIR``, where the DPO signs and submits them (submission by e-mail or a
regulator's portal is not automated yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from markupsafe import escape

from orchestrator.plugin import Contact, Message, Mode, Notifier, Receipt, Setting
from orchestrator.plugin.files import atomic_write, setting_folder, write_each
from orchestrator.plugin.reports import ReportError, build_report, report_phase

from .render import render_report
from .report import filing_name

#: Filings are not public: readable by the owner and group only.
FILING_MODE = 0o640


def _json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


class RegulatorReport(Notifier):
    """Files the breach report for one regulator, in the shape its regime asks for."""

    name: ClassVar[str] = "regulator-filing"
    channel: ClassVar[str] = "regulator"
    contact: ClassVar[Contact | None] = None  # one report per step and regulator
    max_batch: ClassVar[int] = 1
    default_rate: ClassVar[float] = 1.0  # a few filings per incident
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("BREACH_FILING_DIR", "Folder where regulator reports are written for filing"),
    )

    @classmethod
    def check_facts(cls, facts: Mapping[str, Any]) -> list[str]:
        """``report_phase`` must name a report phase (initial, follow-up, final)."""
        try:
            report_phase(facts)
        except ReportError as exc:
            return [str(exc)]
        return []

    def build_payload(self, message: Message) -> dict[str, Any]:
        """``{"filename", "report", "html", "warnings"}``; the report is what gets filed.

        ``warnings`` are for the commander (e.g. a late report without reasons) and are not
        part of the filing.
        """
        report = build_report(message, self.clock())
        return {
            "filename": filing_name(message),
            "report": report.data,
            "html": render_report(report.data),
            "warnings": report.warnings,
        }

    def preview_html(self, message: Message) -> str:
        """The report as it will be printed, with any warnings above it."""
        report = build_report(message, self.clock())
        page = render_report(report.data)
        if not report.warnings:
            return page
        banner = "".join(
            f'<p role="alert" style="border:2px solid #a00;padding:6pt;color:#a00">'
            f"Before filing: {escape(w)}</p>"
            for w in report.warnings
        )
        return page.replace("<main>", f"{banner}<main>", 1)

    def _folder(self) -> Path:
        return setting_folder(self, "BREACH_FILING_DIR", "file the report")

    def file(self, message: Message) -> str:
        """Write the report's JSON and HTML; returns the JSON file's name.

        Filing the same report again rewrites nothing: when the existing file differs only in
        its filing time, the first filing time is kept.
        """
        folder = self._folder()
        name = filing_name(message)
        json_path, html_path = folder / f"{name}.json", folder / f"{name}.html"
        data = build_report(message, self.clock()).data
        previous = _filed_at(json_path)
        if previous is not None:
            again = build_report(message, previous).data
            if _json(again) == json_path.read_bytes():
                data = again
        atomic_write(html_path, render_report(data).encode("utf-8"), FILING_MODE)
        # the JSON last: its presence means "filed"
        atomic_write(json_path, _json(data), FILING_MODE)
        return json_path.name

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Live: write the filing. Sandbox and dry-run: build and check it, write nothing."""

        async def deliver(message: Message) -> str:
            if mode == "live":
                return await asyncio.to_thread(self.file, message)
            self.build_payload(message)
            return f"{filing_name(message)}.json"

        return await write_each(batch, deliver)


def _filed_at(path: Path) -> datetime | None:
    """The filing time recorded in an existing report file, if there is a readable one."""
    try:
        stamp = json.loads(path.read_text("utf-8"))["timeline"]["reported_at"]
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
