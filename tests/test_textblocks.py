"""orchestrator.plugin.textblocks: notice text as safe HTML pieces, the breach's dates, our
templates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import jinja2
import pytest

from orchestrator.plugin.textblocks import (
    breach_dates,
    clean,
    linkify,
    package_template,
    paragraphs,
    split_paragraphs,
)


def test_clean_drops_what_xml_forbids_and_keeps_line_breaks() -> None:
    assert clean("a\x00b\x07c\td\ne\r\ufffe\ud800") == "abc\td\ne\r"


def test_paragraphs_split_on_blank_lines_and_escape_everything() -> None:
    text = "First <b>line</b>\nsame paragraph\n \n\n\x00Second & last"
    assert split_paragraphs(text) == ["First <b>line</b>\nsame paragraph", "Second & last"]
    assert str(paragraphs(text)) == (
        "<p>First &lt;b&gt;line&lt;/b&gt;<br>\nsame paragraph</p>\n<p>Second &amp; last</p>"
    )
    assert str(paragraphs("one", style="margin:0")) == '<p style="margin:0">one</p>'
    assert str(paragraphs(" \n\n ")) == ""


def test_links_are_http_https_and_mailto_only() -> None:
    html = str(linkify("See https://ex.test/a?b=1&c=2. Write to help@ex.test, not javascript:x"))
    assert html == (
        'See <a href="https://ex.test/a?b=1&amp;c=2">https://ex.test/a?b=1&amp;c=2</a>. '
        'Write to <a href="mailto:help@ex.test">help@ex.test</a>, not javascript:x'
    )


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"breach_started": "2025-03-12T02:10:00Z", "breach_ended": "2025-03-13"},
         "2025-03-12 – 2025-03-13"),
        ({"breach_started_at": datetime(2025, 3, 12, tzinfo=UTC),
          "breach_end": date(2025, 3, 12)}, "2025-03-12"),
        ({"breach_ended": "2025-03-13"}, "2025-03-13"),
        ({"breach_started": "last week", "breach_window": "early March\x00"}, "early March"),
        ({"exposure_window": "unknown"}, "unknown"),
        ({}, None),
    ],
)  # fmt: skip
def test_breach_dates_from_the_facts(facts: dict[str, Any], expected: str | None) -> None:
    assert breach_dates(facts) == expected


def test_package_templates_autoescape_and_refuse_unknown_variables() -> None:
    template = package_template("breach_regulator", "report.html.j2")
    assert template is package_template("breach_regulator", "report.html.j2")  # loaded once
    assert template.environment.autoescape is True
    with pytest.raises(jinja2.UndefinedError):
        template.render()
