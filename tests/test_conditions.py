"""The step condition language: safe, whitelisted, data-only."""

from __future__ import annotations

import pytest

from orchestrator.conditions import ConditionError, parse


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        ("counts.unreachable > 500", {"counts": {"unreachable": 501}}, True),
        ("counts.unreachable > 500", {"counts": {"unreachable": 500}}, False),
        ("counts.unreachable > 500 or counts.total > 500000",
         {"counts": {"unreachable": 3, "total": 600_000}}, True),
        ("facts.exfiltration_confirmed", {"facts": {"exfiltration_confirmed": False}}, False),
        ("not recipient.attrs.credentials_breached",
         {"recipient": {"attrs": {"credentials_breached": True}}}, False),
        ("not recipient.attrs.credentials_breached", {"recipient": {"attrs": {}}}, True),
        ("severity in ['high', 'critical']", {"severity": "critical"}, True),
        ("facts.count * 2 >= 10", {"facts": {"count": 5}}, True),
        ("facts.missing > 3", {"facts": {}}, False),
        ("recipient.region == 'US' and recipient.attrs.tier != 'basic'",
         {"recipient": {"region": "US", "attrs": {"tier": "premium"}}}, True),
    ],
)  # fmt: skip
def test_evaluation(source: str, scope: dict[str, object], expected: bool) -> None:
    assert parse(source)(scope) is expected


def test_a_literal_key_reads_counts_per_region() -> None:
    condition = parse("counts.regions['US-CA'] > 500 and counts.regions['US-TX'] >= 250")
    assert condition.names == {"counts.regions"}
    assert condition({"counts": {"regions": {"US-CA": 501, "US-TX": 250}}})
    assert not condition({"counts": {"regions": {"US-CA": 500, "US-TX": 250}}})
    # A region nobody lives in, or counts not known yet, never satisfies a threshold.
    assert not condition({"counts": {"regions": {"US-CA": 501}}})
    assert not condition({"counts": None})


def test_names_are_collected() -> None:
    assert parse("facts.a > 1 and counts.total < facts.b").names == {
        "facts.a", "counts.total", "facts.b"}  # fmt: skip


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("__import__('os').system('id')", "calls are not allowed"),
        ("facts.__class__", "names starting with '_'"),
        ("[x for x in facts]", "ListComp is not allowed"),
        ("facts[facts.key]", "a key may only be a literal after a name"),
        ("[1, 2][0]", "a key may only be a literal after a name"),
        ("counts.regions['US-CA'][0:1]", "a key may only be a literal after a name"),
        ("lambda: 1", "Lambda is not allowed"),
        ("facts.a >", "syntax error"),
    ],
)
def test_unsafe_or_broken_expressions_are_refused(source: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse(source)
    assert fragment in str(info.value)
