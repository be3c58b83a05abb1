"""Shipped playbooks are package data, found by id from any folder."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cli_support import run

from orchestrator import shipped
from orchestrator.errors import BreachError

ROOT = Path(__file__).resolve().parent.parent


def test_every_playbook_in_the_repository_is_shipped_by_its_id() -> None:
    listed = {p.id: p for p in shipped.playbooks()}
    files = sorted((ROOT / "playbooks").glob("*.yaml"))
    assert sorted(listed) == sorted(f.stem for f in files)
    for file in files:
        assert listed[file.stem].path.read_bytes() == file.read_bytes()
    assert shipped.example_audience().is_file()


def test_locate_takes_a_path_or_an_id_and_names_the_choices() -> None:
    path = ROOT / "playbooks" / "processor-breach.yaml"
    assert shipped.locate(path) == path
    assert shipped.locate("processor-breach").read_bytes() == path.read_bytes()
    with pytest.raises(BreachError, match=r"did you mean 'processor-breach'\?"):
        shipped.locate("procesor-breach")
    with pytest.raises(BreachError, match=r"no playbook file missing/x\.yaml"):
        shipped.locate("missing/x.yaml")


def test_playbooks_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("playbooks", "--json", capsys=capsys)
    assert code == 0
    rows = json.loads(out)
    assert {r["id"] for r in rows} == {p.stem for p in (ROOT / "playbooks").glob("*.yaml")}
    assert {r["id"]: r["version"] for r in rows}["credential-leak"] == "3"


def test_trigger_finds_a_shipped_playbook_by_id_from_another_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    people = str(shipped.example_audience())
    code, out, err = run("trigger", "credential-leak", "--dry-run", "-a", people,
                         "-f", "affected_count=245", "--db", f"sqlite:///{tmp_path / 'l.db'}",
                         "--json", capsys=capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["playbook"] == {"id": "credential-leak", "version": "3",
                                   "title": "Account credentials exposed"}  # fmt: skip
    assert summary["audience"]["people"] > 0
    assert (tmp_path / "outbox" / summary["incident"] / "summary.json").is_file()


def test_gen_audience_says_what_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "people.csv"
    code, _, err = run("gen-audience", "--rows", "200", "--out", str(out_file), capsys=capsys)
    assert code == 0
    assert err.startswith(f"wrote {out_file}: 200 people, ")
    assert "GenerationStats" not in err and "with a phone number" in err
    assert len(out_file.read_text().splitlines()) == 201


@pytest.mark.slow
def test_the_wheel_carries_the_playbooks(tmp_path: Path) -> None:
    """``pip install .`` installs what ``breach demo`` needs (built offline, as CI can)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("breach_orchestrator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for playbook in (ROOT / "playbooks").glob("*.yaml"):
        assert f"orchestrator/playbooks/{playbook.name}" in names
    assert "orchestrator/playbooks/examples/affected-people.csv" in names
    assert not any(n.startswith(("playbooks/", "plugins/")) for n in names)
