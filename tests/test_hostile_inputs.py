"""Hostile and clumsy input, as a command line meets it: every case is one line, exit 1 or 2.

Each case runs ``breach`` in its own process and is measured there: its exit code, its message
(one line, no traceback), its wall time and its peak memory (the high-water mark of that
process, which it writes as it exits). The limits are loose on purpose (10 s, 300 MB): they catch a
command that reads a file without end or expands an alias bomb, not a slow machine.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
NOTIFIERS = Path(__file__).parent / "notifiers"
PEOPLE = ROOT / "playbooks" / "examples" / "affected-people.csv"
MAX_SECONDS = 10.0
MAX_RSS_MB = 300.0


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    rss_mb: float


#: runs `breach` and, as the process exits, writes its own peak memory to stderr: VmHWM, the
#: high-water mark of this program's memory (ru_maxrss would include the parent's, inherited
#: across fork)
LAUNCHER = """
import atexit, os, re, sys
def report():
    with open("/proc/self/status") as status:
        peak = re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1)
    os.write(2, b"peak-rss-kb=" + peak.encode() + b"\\n")
atexit.register(report)
from orchestrator.commands import main
main(sys.argv[1:])
"""


def breach(args: list[str | bytes], cwd: Path, **env: str) -> Outcome:
    """Run ``breach ARGS`` and measure it (time and peak memory of that process alone)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **env},
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    seconds = time.monotonic() - started
    rss = _peak_rss_mb(err)
    return Outcome(process.returncode, out.decode("utf-8", "replace"),
                   _strip_rss(err).decode("utf-8", "replace"), seconds, rss)  # fmt: skip


def _peak_rss_mb(stderr: bytes) -> float:
    for line in stderr.splitlines():
        if line.startswith(b"peak-rss-kb="):
            return int(line.split(b"=")[1]) / 1024
    raise AssertionError("the child did not report its memory")


def _strip_rss(stderr: bytes) -> bytes:
    return b"\n".join(x for x in stderr.splitlines() if not x.startswith(b"peak-rss-kb="))


def endless(path: Path) -> Path:
    """A file that never ends, as a path a command is handed: /dev/zero."""
    return Path("/dev/zero")


def huge_playbook(path: Path) -> Path:
    path.write_text("# padding\n" * 400_000 + "id: x\n")  # 4 MB of comments
    return path


def deep_yaml(path: Path) -> Path:
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    return path


def wide_csv(path: Path) -> Path:
    path = path.with_suffix(".csv")
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + "\nid\n")  # 600 KB, one line
    return path


def long_line_csv(path: Path) -> Path:
    path = path.with_suffix(".csv")
    path.write_text("id,name\n" + "p1," + "x" * 3_000_000 + "\n")
    return path


def deep_json(path: Path) -> Path:
    path.write_text('{"source": "dlp", "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    return path


def secrets_db(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE secrets (id TEXT, email TEXT)")
        db.execute("INSERT INTO secrets VALUES ('p1', 'ana@example.org')")
    return path


Make = Callable[[Path], Path]


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str | bytes, ...]
    expect_code: int
    expect_text: str
    files: tuple[tuple[str, Make], ...] = ()


CASES = [
    Case("alias bomb playbook", ("validate", str(HOSTILE / "alias-bomb.yaml")), 1,
         "expands to more than"),
    Case("alias bomb trigger", ("trigger", str(HOSTILE / "alias-bomb.yaml"), "-a", str(PEOPLE),
                                "--dry-run"), 1, "expands to more than"),
    Case("endless playbook", ("validate", "{endless}"), 1, "not a regular file",
         (("endless", endless),)),
    Case("huge playbook", ("validate", "{huge}"), 1, "larger than",
         (("huge", huge_playbook),)),
    Case("deeply nested playbook", ("validate", "{deep}"), 1, "nested too deeply",
         (("deep", deep_yaml),)),
    Case("alias bomb regimes", ("--regimes", str(HOSTILE / "alias-bomb.yaml"), "regimes"), 2,
         "expands to more than"),
    Case("endless regimes", ("--regimes", "{endless}", "regimes"), 2, "not a regular file",
         (("endless", endless),)),
    Case("endless server config", ("serve", "--config", "{endless}"), 2, "not a regular file",
         (("endless", endless),)),
    Case("million-column audience", ("trigger", "credential-leak", "-a", "{wide}", "--dry-run",
                                     "-f", "affected_count=1"), 2, "columns, more than",
         (("wide", wide_csv),)),
    Case("endless audience line", ("trigger", "credential-leak", "-a", "{long}", "--dry-run",
                                   "-f", "affected_count=1"), 2, "longer than",
         (("long", long_line_csv),)),
    Case("endless test recipients", ("--plugins-dir", str(NOTIFIERS), "trigger",
                                     str(Path(__file__).parent / "fixtures" / "playbooks"
                                         / "engine-sms.yaml"),
                                     "-a", str(PEOPLE), "--live", "--redirect-to", "{endless}"),
         2, "not a regular file", (("endless", endless),)),
    Case("markup in an incident id", ("status", "INC-[/x]"), 2, "no incident 'INC-[/x]'"),
    Case("markup in a fact", ("trigger", "credential-leak", "-a", str(PEOPLE), "--dry-run",
                              "-f", "affected_count=[/bold]"), 2, "got '[/bold]'"),
    Case("invalid UTF-8 in a fact", ("trigger", "credential-leak", "-a", str(PEOPLE),
                                     "--dry-run", "-f", "affected_count=3",
                                     b"-f", b"note=caf\xe9"), 2, "not valid Unicode"),
    Case("superscript digits", ("gen-audience", "--rows", "¹²"), 2, "is not a valid integer"),
    Case("deeply nested webhook payload", ("routes", "test", "{payload}", "--config",
                                           str(Path(__file__).parent / "fixtures" / "server"
                                               / "breach.toml")),
         2, "nested too deeply", (("payload", deep_json),)),
    Case("DDL in an audience query", ("trigger", "credential-leak", "-a", "sql:sqlite:///{db}",
                                      "--query", "DROP TABLE secrets", "--dry-run",
                                      "-f", "affected_count=1"), 2, "readonly database",
         (("db", secrets_db),)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_line_and_a_clean_exit(case: Case, tmp_path: Path) -> None:
    made = {name: str(make(tmp_path / name)) for name, make in case.files}
    args = [a.format(**made) if isinstance(a, str) else a for a in case.args]
    result = breach(args, tmp_path, STANDIN_URL="http://127.0.0.1:9",
                    BREACH_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}")  # fmt: skip
    # `validate` prints problems on stdout (a count follows on stderr); all else errs on stderr
    message = result.stdout if case.args[0] == "validate" else result.stderr
    lines = [line for line in message.splitlines() if line.strip()]
    assert result.code == case.expect_code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr
    assert len(lines) == 1, lines
    assert case.expect_text in lines[0]
    assert result.seconds < MAX_SECONDS, f"{case.name}: {result.seconds:.1f} s"
    assert result.rss_mb < MAX_RSS_MB, f"{case.name}: {result.rss_mb:.0f} MB"
    if "db" in made:
        with sqlite3.connect(made["db"]) as db:
            assert db.execute("SELECT COUNT(*) FROM secrets").fetchone() == (1,)


def test_markup_in_a_playbook_is_printed_as_written(tmp_path: Path) -> None:
    result = breach(["trigger", str(HOSTILE / "markup-title.yaml"), "-a", str(PEOPLE),
                     "--dry-run", "-f", "affected_count=5", "--outbox", str(tmp_path / "out")],
                    tmp_path,
                    BREACH_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}")  # fmt: skip
    assert result.code == 0, result.stderr
    assert "[/bold] closing a tag that was never opened" in result.stdout


def test_a_ledger_that_cannot_be_written_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    from orchestrator.session import Breach

    ledger = tmp_path / "ledger.db"
    with Breach(f"sqlite:///{ledger}") as session:
        incident = session.trigger("credential-leak", audience=str(PEOPLE), mode="dry-run",
                                  facts={"affected_count": 5},
                                  outbox=tmp_path / "out").incident_id  # fmt: skip
    read_only = f"sqlite:///file:{ledger}?mode=ro&uri=true"
    result = breach(["cancel", incident, "--by", "ic", "--db", read_only], tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1, result.stderr
    assert "attempt to write a readonly database" in lines[0]
    assert "nothing was lost" in lines[0]
    with Breach(f"sqlite:///{ledger}") as session:
        assert session.status(incident)["state"] == "finished"  # the cancel changed nothing
