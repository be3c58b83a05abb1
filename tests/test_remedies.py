"""The optional ``remedies`` section: what the organisation offers the person, rendered in every
channel with room for it (e-mail, public page, call), in reading order after the advice."""

from __future__ import annotations

from typing import Any

from orchestrator.notice import NoticeRenderer, template_context
from orchestrator.playbook import Playbook
from orchestrator.plugin.headings import HEADINGS


def playbook(**extra: str) -> Playbook:
    en: dict[str, Any] = {
        "what_happened": "A bug exposed our card records.",
        "impact": "Your card may be misused.", "measures": "We closed the access.",
        "advice": "Check your statements.", "contact": "privacy@example.org", **extra,
    }  # fmt: skip
    return Playbook.model_validate({
        "id": "remedies", "title": "Card data", "version": 1, "severity": "high",
        "organisation": {"name": "Example", "contact_email": "privacy@example.org"},
        "notice": {"en": en}, "steps": [{"id": "s", "channel": "email", "at": "+0m"}],
    })  # fmt: skip


def render(book: Playbook) -> Any:
    context = template_context(playbook=book, incident={}, facts={"months": 24})
    return NoticeRenderer(book).render("en", context)


def test_remedies_render_after_the_advice_and_in_the_call() -> None:
    notice = render(playbook(remedies="{{ facts.months }} months of free credit monitoring."))
    assert [key for key, _ in notice.sections()] == [
        "what_happened",
        "impact",
        "measures",
        "advice",
        "remedies",
        "contact",
    ]
    assert notice.remedies == "24 months of free credit monitoring."
    assert "Check your statements. 24 months of free credit monitoring. privacy" in notice.call


def test_without_remedies_nothing_changes() -> None:
    notice = render(playbook())
    assert notice.remedies is None
    assert "remedies" not in dict(notice.sections())
    assert "Check your statements. privacy@example.org" in notice.call


def test_every_heading_table_names_the_remedies_section() -> None:
    assert all("remedies" in table for table in HEADINGS.values())
    assert HEADINGS["en"]["remedies"] == "What We Offer You"
