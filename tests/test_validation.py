"""`breach validate`: every class of problem, each from its own fixture, located FILE:LINE:COL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.pluginhost import PluginHost
from orchestrator.validation import validate_file, validate_text

FIXTURES = Path(__file__).parent / "fixtures" / "playbooks"
BROKEN = FIXTURES / "broken"
PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def problems_of(name: str, host: PluginHost) -> list[str]:
    path = BROKEN / name
    return [f"{p.line}:{p.column}: {p.message}" for p in validate_file(path, host=host)[1]]


def test_minimal_fixture_is_valid(host: PluginHost) -> None:
    playbook, problems = validate_file(FIXTURES / "minimal.yaml", host=host)
    assert problems == []
    assert playbook is not None and playbook.id == "minimal"


@pytest.mark.parametrize("path", sorted(PLAYBOOKS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_playbooks_are_valid(path: Path, host: PluginHost) -> None:
    playbook, problems = validate_file(path, host=host)
    assert [str(p) for p in problems] == []
    assert playbook is not None
    assert len(playbook.notice) >= 2
    assert any(any(ord(c) > 0x2FF for c in n.impact) for n in playbook.notice.values())


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("yaml-syntax.yaml", "15:11: YAML syntax error"),
        ("unknown-key.yaml", "15:5: unknown key 'advise'; did you mean 'advice'?"),
        ("wrong-type.yaml", "4:11: severity: should be 'low', 'medium', 'high' or 'critical'"),
        ("missing-notice-field.yaml", "19:5: notice.ja.advice: required but missing"),
        ("missing-what-happened.yaml", "19:5: notice.de.what_happened: required but missing"),
        ("template-undefined.yaml", "14:15: notice en.measures: 'dict object' has no attribute"),
        ("template-syntax.yaml", "14:15: notice en.measures: template error: unexpected '}'"),
        ("unknown-channel.yaml", "30:14: unknown channel 'smss'; did you mean 'sms'?"),
        ("sms-gsm-over-budget.yaml", "18:10: notice en.sms needs 2 GSM-7 segments (249 septets)"),
        ("sms-ucs2-over-budget.yaml", "25:10: notice ja.sms needs 2 UCS-2 segments (80 code"),
        ("duplicate-step.yaml", "33:9: duplicate step id 'sms-all'"),
        ("deadline-unknown-regulator.yaml", "36:27: unknown regulator 'dpo'; did you mean 'dpa'?"),
    ],
)
def test_each_problem_is_located(fixture: str, expected: str, host: PluginHost) -> None:
    found = problems_of(fixture, host)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_undefined_fact_names_the_declared_ones(host: PluginHost) -> None:
    (message,) = problems_of("template-undefined.yaml", host)
    assert "fixed_on" in message and "declared facts: affected_count" in message


def test_all_problems_are_reported_at_once(host: PluginHost) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    text = text.replace("channel: sms", "channel: smss").replace("id: report", "id: sms-all")
    text = text.replace("We fixed the bug.", '"{{ facts.nope }}"')
    _, problems = validate_text(text, "many.yaml", host=host)
    messages = [p.message for p in problems]
    assert len(problems) == 3, messages
    assert problems == sorted(problems)


def test_unquoted_template_gets_a_hint(host: PluginHost) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    text = text.replace("We fixed the bug.", "{{ facts.affected_count }}")
    problems = validate_text(text, "unquoted.yaml", host=host)[1]
    assert {p.line for p in problems} == {14}
    assert any("must be quoted" in p.message for p in problems)


def test_condition_language_errors_are_located(host: PluginHost) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    text = text.replace(
        "    fallback: email\n",
        '    fallback: email\n    condition: "counts.unreachabel > 5 or __import__(1)"\n',
    )
    _, problems = validate_text(text, "cond.yaml", host=host)
    assert len(problems) == 1
    assert problems[0].line == 33
    assert "calls are not allowed" in problems[0].message


def test_unknown_fact_in_condition(host: PluginHost) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    text = text.replace(
        "    fallback: email\n", '    fallback: email\n    condition: "facts.affected > 5"\n'
    )
    (problem,) = validate_text(text, "cond.yaml", host=host)[1]
    assert "unknown fact 'affected'; did you mean 'affected_count'?" in problem.message


def test_cli_exit_codes_and_output(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", *map(str, PLAYBOOKS.glob("*.yaml"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(BROKEN / "unknown-key.yaml"),
         str(BROKEN / "duplicate-step.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[0].endswith("unknown-key.yaml:15:5: unknown key 'advise'; did you mean 'advice'?")
    assert lines[1].endswith("duplicate-step.yaml:33:9: duplicate step id 'sms-all'")
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("approval", "expected"),
    [("{role: dpo, roles: [dpo, legal]}", "either `role` or `roles`"),
     ("{roles: [dpo, legal], quorum: 3}", "quorum 3 is more than the 2 role(s)"),
     ("{roles: []}", "at least 1 item")],
)  # fmt: skip
def test_approval_roles_and_quorum_are_checked(
    approval: str, expected: str, host: PluginHost
) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    gated = text.replace("    at: +0m", f"    at: +0m\n    approval: {approval}", 1)
    assert gated != text
    _, problems = validate_text(gated, "gated.yaml", host=host)
    assert any(expected in p.message for p in problems), problems


def test_a_single_role_approval_still_reads(host: PluginHost) -> None:
    text = (FIXTURES / "minimal.yaml").read_text("utf-8")
    gated = text.replace("    at: +0m", "    at: +0m\n    approval: {role: dpo}", 1)
    playbook, problems = validate_text(gated, "gated.yaml", host=host)
    assert not problems and playbook is not None
    gate = playbook.steps[0].approval
    assert gate is not None and (gate.required_roles, gate.needed, gate.cli) == (["dpo"], 1, True)
