"""``breach demo`` and ``breach simulate`` as a person runs them: own processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from breach_twilio import TwilioSms
from engine_support import deliveries
from factories import make_message

from orchestrator.errors import ConfigurationError
from orchestrator.simulator.cli import load_config_file, simulator_banner

ROOT = Path(__file__).parent.parent
PLAYBOOK = ROOT / "playbooks" / "credential-leak.yaml"
#: Wide enough that no table cell wraps, so the output can be read line by line.
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def _breach(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("│┃").split("│")]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.slow
def test_demo_runs_the_playbook_live_and_its_counts_match_the_ledger(tmp_path: Path) -> None:
    done = subprocess.run(
        _breach("demo", "--people", "500", "--outdir", str(tmp_path)),
        cwd=ROOT,  # the README runs it from the repository root, where playbooks/ is
        env={**os.environ, **WIDE},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    incident = re.search(r"incident\s+(INC-\S+),", out)
    assert incident, out
    rows = deliveries(f"sqlite:///{tmp_path / 'demo.db'}", incident.group(1))

    # Every step of the playbook is in the status table, settled, with the ledger's counts.
    lines = {_cells(line)[0]: _cells(line) for line in out.splitlines() if line.startswith("│")}
    steps = [step["id"] for step in yaml.safe_load(PLAYBOOK.read_text("utf-8"))["steps"]]
    ledger_steps: dict[str, Counter[str]] = {}
    for row in rows:
        ledger_steps.setdefault(row.step_id, Counter())[row.state] += 1
    for step in steps:
        assert step in lines, f"step {step} not in the status table:\n{out}"
        _, _, state, _, counts, *_ = lines[step]
        assert state in ("done", "not_fired"), lines[step]
        shown = {k: _number(v) for k, v in re.findall(r"(\w+): ([\d,]+)", counts)}
        assert shown == dict(ledger_steps.get(step, {})), step
    assert "dpc-report (role dpo) as 'demo'" in out  # the gated step was approved, and said so

    # The simulator's accepted messages match the ledger's sent deliveries, channel by channel.
    sent = Counter(r.channel for r in rows if r.state in ("sent", "delivered"))
    table = {c[1]: c for line in out.splitlines() if line.startswith("│")
             if (c := _cells(line))[1] in ("sms", "email", "push")}  # fmt: skip
    assert set(table) == {"sms", "email", "push"}, out
    for channel, cells in table.items():
        accepted, recorded, agree = _number(cells[4]), _number(cells[5]), cells[6]
        assert accepted == recorded == sent[channel] > 0, (channel, cells)
        assert agree == "yes"
    assert "Simulator and ledger agree on every channel" in out
    assert re.search(r"Simulator page: http://127\.0\.0\.1:\d+/", out)
    assert list(tmp_path.glob("filings/*.json")), "the regulator report was not filed"


def test_demo_runs_from_any_folder_with_a_shipped_playbook_by_id(tmp_path: Path) -> None:
    """The shipped playbooks are package data: no repository checkout needed."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = subprocess.run(
        _breach("demo", "--people", "40", "--playbook", "payment-data-exfiltration",
                "--outdir", str(tmp_path / "out")),
        cwd=empty, env={**os.environ, **WIDE}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "payment-data-exfiltration v2" in done.stdout
    assert "Simulator and ledger agree on every channel" in done.stdout
    assert list(empty.iterdir()) == []  # nothing written where it ran


def test_demo_with_an_unknown_playbook_lists_the_shipped_ones(tmp_path: Path) -> None:
    done = subprocess.run(_breach("demo", "--people", "5", "--playbook", "credential-leek"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "did you mean 'credential-leak'?" in done.stderr
    assert "ransomware-unknown-scope" in done.stderr
    assert "Traceback" not in done.stderr


class _Output:
    """What a running process has written to a pipe so far, read without blocking forever."""

    def __init__(self, pipe: Any) -> None:
        self.fd = pipe.fileno()
        self.text = ""

    def wait_for(self, pattern: str, seconds: float) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while not (match := re.search(pattern, self.text)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} within {seconds}s in:\n{self.text}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"output ended without {pattern!r}:\n{self.text}")
            self.text += chunk.decode()
        return match


def test_simulate_serves_until_sigint_and_its_exports_reach_it() -> None:
    proc = subprocess.Popen(_breach("simulate", "--port", "0", "--seed", "7"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        output = _Output(proc.stdout)
        match = output.wait_for(r"listening on (http://127\.0\.0\.1:(\d+))\n", 30)
        url, port = match.group(1), int(match.group(2))
        output.wait_for(r"Press Ctrl-C to stop", 10)
        banner = output.text
        with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:
            stats = json.load(response)
        assert {"twilio", "sendgrid", "fcm"} <= set(stats)
        assert stats["twilio"]["requests"] == 0

        # The printed exports are all a plugin needs: an SMS sent with them lands there.
        exports = dict(
            shlex.split(line.strip())[1].split("=", 1)
            for line in banner.splitlines()
            if line.strip().startswith("export ")
        )
        assert exports["TWILIO_API_BASE_URL"] == url
        notifier = TwilioSms(exports)

        async def send() -> None:
            try:
                [receipt] = await notifier.send([make_message("sms")], "live")
                assert receipt.outcome.value == "sent", receipt
            finally:
                await notifier.aclose()

        asyncio.run(send())
        with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:
            assert json.load(response)["twilio"]["accepted_messages"] == 1

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None and b"simulator stopped" in proc.stderr.read()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_reads_faults_from_toml_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "faults.toml"
    good.write_text("seed = 3\n[providers.twilio]\nerror_rate = 0.1\nerror_statuses = [503]\n")
    config = load_config_file(good)
    assert config.seed == 3
    assert config.provider("twilio").error_rate == 0.1
    assert config.provider("twilio").error_statuses == (503,)
    assert "twilio: error_rate=0.1, error_statuses=[503]" in simulator_banner("http://h:1", config)

    bad = tmp_path / "faults.json"
    bad.write_text('{"providers": {"twilio": {"eror_rate": 0.1}}}')
    with pytest.raises(ConfigurationError, match=r"faults\.json: unknown fault setting.*eror_rate"):
        load_config_file(bad)
