"""orchestrator.plugin.reasons: provider error text as a receipt keeps it (masked, one line,
short)."""

from __future__ import annotations

from orchestrator.plugin.reasons import MAX_REASON, mask_reason


def test_contacts_are_masked_and_codes_stay_readable() -> None:
    assert mask_reason("Invalid 'To' Phone Number: +15005550001") == (
        "Invalid 'To' Phone Number: +15…01"
    )
    assert mask_reason("550 5.7.1 <alex.smith@example.com>: rejected on 2025-03-12") == (
        "550 5.7.1 <a…@example.com>: rejected on 2025-03-12"
    )
    assert mask_reason("call 020 7946 0958, code 12345678") == "call 02…58, code 12345678"


def test_one_line_cut_to_the_maximum() -> None:
    assert mask_reason("  two\n\nlines   here ") == "two lines here"
    long = mask_reason("x" * (MAX_REASON + 50))
    assert len(long) == MAX_REASON
    assert long.endswith("…")
    assert mask_reason("y" * MAX_REASON) == "y" * MAX_REASON
