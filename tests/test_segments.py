"""SMS segment counting: GSM-7 and UCS-2 boundaries, escapes and surrogate pairs."""

from __future__ import annotations

import pytest

from orchestrator.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentCount,
    count_segments,
    is_gsm7,
    non_gsm7_characters,
    split_segments,
)


def test_alphabet_sizes_match_the_standard() -> None:
    # 128 code points minus ESC; the extension table has 9 printable characters plus form feed.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    "char",
    [*"£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà¤¡@$", "\n", "\r"],
)
def test_basic_characters_cost_one_septet(char: str) -> None:
    assert count_segments(char) == SegmentCount("GSM-7", 1, 1, 160, 159)


@pytest.mark.parametrize("char", [*"^{}\\[~]|€", "\f"])
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count_segments(char) == SegmentCount("GSM-7", 2, 1, 160, 158)


@pytest.mark.parametrize(
    "char",
    # lowercase ç, look-alike Greek capitals, accents missing from the table, tab, NBSP, curly
    # quotes and the en dash that word processors insert
    ["ç", "Α", "Β", "á", "í", "ó", "ú", "â", "ê", "õ", "\t", "\u00a0", "’", "“", "–", "`"],
)
def test_characters_outside_gsm7_switch_to_ucs2(char: str) -> None:
    assert not is_gsm7(char)
    assert count_segments("a" + char).encoding == "UCS-2"


def test_empty_text_is_billed_as_one_segment() -> None:
    assert count_segments("") == SegmentCount("GSM-7", 0, 1, 160, 160)
    assert split_segments("") == [""]


def test_gsm7_single_segment_boundary() -> None:
    assert count_segments("a" * 160) == SegmentCount("GSM-7", 160, 1, 160, 0)
    assert count_segments("a" * 161) == SegmentCount("GSM-7", 161, 2, 153, 145)


def test_gsm7_concatenated_boundaries() -> None:
    assert count_segments("a" * 306) == SegmentCount("GSM-7", 306, 2, 153, 0)
    assert count_segments("a" * 307) == SegmentCount("GSM-7", 307, 3, 153, 152)
    assert count_segments("a" * 459).segments == 3
    assert count_segments("a" * 460).segments == 4


def test_euro_fills_a_single_segment_exactly() -> None:
    assert count_segments("a" * 158 + "€") == SegmentCount("GSM-7", 160, 1, 160, 0)
    # 161 septets: concatenated, and 153 + 8 fit in two parts.
    assert count_segments("a" * 159 + "€") == SegmentCount("GSM-7", 161, 2, 153, 145)


def test_escape_pair_is_never_split_across_segments() -> None:
    # 152 septets then € (2): it cannot start at septet 153, so part one keeps one septet empty.
    text = "a" * 152 + "€" + "b" * 10
    result = count_segments(text)
    assert result.units == 164
    assert result.segments == 2
    assert result.remaining == 153 - 12
    parts = split_segments(text)
    assert parts == ["a" * 152, "€" + "b" * 10]


def test_escape_pair_ending_exactly_at_a_boundary_is_not_moved() -> None:
    text = "a" * 151 + "€" + "b" * 10
    assert split_segments(text) == ["a" * 151 + "€", "b" * 10]
    assert count_segments(text).remaining == 143


def test_escape_pushes_a_three_segment_message_to_four() -> None:
    # 459 septets fill three parts exactly; the same length with a split-forced escape needs four.
    assert count_segments("a" * 459).segments == 3
    text = "a" * 152 + "{" + "a" * 305  # 152 + 2 + 305 = 459 septets
    assert count_segments(text).units == 459
    assert count_segments(text).segments == 4


def test_ucs2_single_segment_boundary() -> None:
    assert count_segments("ç" * 70) == SegmentCount("UCS-2", 70, 1, 70, 0)
    assert count_segments("ç" * 71) == SegmentCount("UCS-2", 71, 2, 67, 63)
    assert count_segments("ç" * 134) == SegmentCount("UCS-2", 134, 2, 67, 0)
    assert count_segments("ç" * 135).segments == 3


def test_one_non_gsm_character_switches_the_whole_message() -> None:
    text = "a" * 100 + "ç"
    assert count_segments(text) == SegmentCount("UCS-2", 101, 2, 67, 33)
    # Extension characters are plain UTF-16 units in UCS-2, not escapes.
    assert count_segments("€" * 70 + "ç").units == 71


def test_emoji_count_as_two_units() -> None:
    assert count_segments("😀" * 35) == SegmentCount("UCS-2", 70, 1, 70, 0)
    assert count_segments("😀" * 35 + "a").segments == 2


def test_surrogate_pair_is_never_split_across_segments() -> None:
    text = "a" * 66 + "😀" + "b" * 10  # 78 units: concatenated; the emoji would straddle 67
    result = count_segments(text)
    assert result.units == 78
    assert result.segments == 2
    assert split_segments(text) == ["a" * 66, "😀" + "b" * 10]
    assert result.remaining == 67 - 12


def test_emoji_at_the_single_segment_boundary() -> None:
    assert count_segments("a" * 68 + "😀").segments == 1  # 70 units
    assert count_segments("a" * 69 + "😀").segments == 2  # 71 units


def test_japanese_text() -> None:
    text = "お客様の個人情報が流出した可能性があります。"  # 22 BMP characters
    assert count_segments(text) == SegmentCount("UCS-2", 22, 1, 70, 48)
    assert count_segments(text * 4).segments == 2  # 88 units


def test_arabic_text() -> None:
    text = "تم تسريب بياناتك الشخصية. يرجى تغيير كلمة المرور فورا."
    result = count_segments(text)
    assert result.encoding == "UCS-2"
    assert result.units == len(text)
    assert result.segments == 1
    assert count_segments(text * 3).segments == 3  # 162 units -> 67 + 67 + 28


def test_realistic_breach_notice_in_gsm7() -> None:
    text = (
        "Acme Bank: on 3 May your name, e-mail and card's last 4 digits were exposed. "
        "Reset your password at acme.example/reset and watch for phishing. Help: 0800 123 456"
    )
    result = count_segments(text)
    assert result.encoding == "GSM-7"
    assert result.units == len(text) == 161  # one septet too many: billed as two
    assert result.segments == 2


def test_split_segments_reassembles_to_the_original() -> None:
    text = ("Ünïcödé? ❤️ " * 40) + "end"
    assert "".join(split_segments(text)) == text
    assert len(split_segments(text)) == count_segments(text).segments


def test_non_gsm7_characters_lists_each_offender_once() -> None:
    assert non_gsm7_characters("Hi ç, ça va? 😀 ç") == ["ç", "😀"]
    assert non_gsm7_characters("plain €") == []
