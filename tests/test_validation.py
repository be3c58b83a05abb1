"""`breach validate`: every class of problem, each from its own fixture, located FILE:LINE:COL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import Problem
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
    warnings: list[Problem] = []  # every regulator report complete, too
    playbook, problems = validate_file(path, host=host, warnings=warnings)
    assert [str(p) for p in problems + warnings] == []
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


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_report_item_the_playbook_cannot_give_is_named_where_it_belongs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_support import run

    text = (PLAYBOOKS / "credential-leak.yaml").read_text("utf-8")
    # the GDPR report's approximate number of records reads facts.records_count
    without_fact = text.replace(
        "  records_count:\n    type: integer\n    description: Records in the exposed backup.\n"
        "    example: 51877\n", "")  # fmt: skip
    assert without_fact != text
    path = tmp_path / "credential-leak.yaml"
    path.write_text(without_fact, "utf-8")
    code, out, err = run("validate", str(path), capsys=capsys)
    assert code == 0 and "1 playbook(s) valid, 1 warning(s)" in err  # it still runs
    line = _line_of(without_fact, "facts:")
    expected = (
        f"credential-leak.yaml:{line}:1: warning: regulator 'ie-dpc' (gdpr-art33): its report "
        "must state 'approx_records' (Approximate number of personal data records concerned), "
        "read from facts.records_count, which this playbook does not give: declare fact "
        "records_count"
    )
    assert expected in out
    code, _, err = run("validate", "--strict", str(path), capsys=capsys)
    assert code == 1 and "1 problem(s) in 1 file(s)" in err
    # the regulator's own text: an optional field the regime needs is named in its section
    without_text = text.replace("      breach_type: [confidentiality]\n", "")
    path.write_text(without_text, "utf-8")
    code, out, _ = run("validate", "--strict", str(path), capsys=capsys)
    assert code == 1
    line = _line_of(without_text, "    regulator:")
    expected = f"credential-leak.yaml:{line}:5: warning: regulator 'ie-dpc' (gdpr-art33): "
    assert expected + "its report must state 'breach_type'" in out
    assert "write breach_type here" in out


def test_a_notice_without_a_regulator_section_is_told_to_add_one(host: PluginHost) -> None:
    text = (PLAYBOOKS / "processor-breach.yaml").read_text("utf-8")
    start = text.index("    regulator:\n")
    end = text.index("  ko:\n")
    warnings: list[Problem] = []
    errors = validate_text(text[:start] + text[end:], "p.yaml", host=host, warnings=warnings)[1]
    assert errors == []
    problems = warnings
    messages = [p.message for p in problems]
    assert any("'ico' (uk-gdpr-art33)" in m and "'nature'" in m and
               "add a `regulator:` section (third person) with nature" in m
               for m in messages), messages  # fmt: skip
    assert any("'pdpc' (sg-pdpa)" in m and "'potential_harm'" in m for m in messages)
    en = _line_of(text, "  en:")
    assert {(p.line, p.column) for p in problems if "'nature'" in p.message} == {(en, 3)}


def test_a_later_phase_needs_an_earlier_filing(host: PluginHost) -> None:
    text = (PLAYBOOKS / "credential-leak.yaml").read_text("utf-8")
    text = text.replace("  - id: dpc-report\n", "  - id: dpc-report\n    phase: follow-up\n")
    warnings: list[Problem] = []
    assert validate_text(text, "c.yaml", host=host, warnings=warnings)[1] == []
    (problem,) = warnings
    assert problem.severity == "warning"
    expected = "step 'dpc-report' files a follow-up report to 'ie-dpc', but no earlier step"
    assert expected in problem.message
    assert problem.line == _line_of(text, "phase: follow-up")


def test_a_regulator_text_is_a_template_checked_like_the_others(host: PluginHost) -> None:
    text = (PLAYBOOKS / "credential-leak.yaml").read_text("utf-8")
    text = text.replace("{{ facts.exposure_window }} because of", "{{ facts.exposure_windw }} "
                        "because of")  # fmt: skip
    (problem,) = validate_text(text, "c.yaml", host=host)[1]
    assert problem.message.startswith("notice en.regulator.nature: ")
    assert "exposure_windw" in problem.message
    assert problem.line == _line_of(text, "      nature: >")
