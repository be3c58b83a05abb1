"""orchestrator.plugin.headings and orchestrator.locales: the notice's headings per language."""

from __future__ import annotations

import pytest
from factories import make_notice

from orchestrator.locales import direction, language
from orchestrator.plugin.headings import HEADINGS, headings_for


def test_every_table_heads_every_section_with_the_same_keys() -> None:
    keys = list(HEADINGS["en"])
    assert {key for key, _ in make_notice().sections()} <= set(keys)
    for lang, table in HEADINGS.items():
        assert list(table) == keys, lang
        assert all(value.strip() for value in table.values()), lang


@pytest.mark.parametrize(
    ("locale", "title"),
    [
        ("en-GB", "Notice of Data Breach"),
        ("pt-BR", "Aviso de violação de dados"),
        ("zh-Hant", "数据泄露通知"),
        ("ko", "Notice of Data Breach"),  # no table: English
    ],
)
def test_headings_follow_the_primary_language(locale: str, title: str) -> None:
    assert headings_for(locale)["title"] == title


def test_a_channel_can_limit_the_languages_it_uses() -> None:
    assert headings_for("ar", {"en", "ja"}) == HEADINGS["en"]
    assert headings_for("ja", {"en", "ja"}) == HEADINGS["ja"]


def test_the_caller_gets_its_own_copy() -> None:
    headings_for("en")["title"] = "changed"
    assert HEADINGS["en"]["title"] == "Notice of Data Breach"


def test_language_and_direction() -> None:
    assert language("zh-Hans") == "zh"
    assert language("PT-br") == "pt"
    assert [direction(x) for x in ("ar", "he-IL", "fa", "en", "ja")] == [
        "rtl", "rtl", "rtl", "ltr", "ltr"
    ]  # fmt: skip
