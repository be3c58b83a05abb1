"""The README's Webhooks section works as written: its config loads, its signing examples are
accepted by a real server, its Alertmanager receiver is a valid Alertmanager config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.server.harness import HERE, ROOT, incidents, load, serving

SECTION = (ROOT / "README.md").read_text("utf-8").split("## Webhooks", 1)[1].split("\n## ", 1)[0]


def block(language: str, index: int = 0) -> str:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, re.S)[index]


@pytest.fixture
def readme_config(tmp_path: Path) -> Path:
    """The README's config file, with the files it names laid out beside it."""
    (tmp_path / "playbooks").symlink_to(ROOT / "playbooks")
    shutil.copy(HERE / "people.csv", tmp_path / "people.csv")
    (tmp_path / "secrets").mkdir()
    shutil.copy(HERE / "secrets" / "alertmanager-token", tmp_path / "secrets")
    shutil.copy(HERE / "secrets" / "generic-secret", tmp_path / "secrets" / "webhook-secret")
    path = tmp_path / "breach.toml"
    path.write_text(block("toml"), "utf-8")
    return path


def test_the_readme_config_loads(readme_config: Path) -> None:
    config = load(readme_config)
    assert [r.name for r in config.routes] == ["ransomware", "dlp-ransomware"]
    assert config.audiences["tenant-customers"].bind == {"tenant": "tenant"}
    assert config.force_mode == "dry-run"


@pytest.mark.parametrize("language", ["python", "sh"])
def test_the_readme_signing_examples_are_accepted(
    readme_config: Path, tmp_path: Path, language: str
) -> None:
    if language == "sh" and not (shutil.which("curl") and shutil.which("openssl")):
        pytest.skip("curl or openssl is not installed")
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    shutil.copy(tmp_path / "secrets" / "webhook-secret", tmp_path / "webhook-secret")
    with serving(load(readme_config), db) as server:
        script = block(language).replace("http://127.0.0.1:8080", server.url)
        command = [sys.executable, "-c", script] if language == "python" else ["sh", "-c", script]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"status":"created"' in result.stdout.replace(" ", "")
    assert [i["mode"] for i in incidents(db)] == ["dry-run"]


def test_the_readme_alertmanager_receiver_is_valid(tmp_path: Path) -> None:
    snippet = yaml.safe_load(block("yaml"))
    webhook = snippet["receivers"][0]["webhook_configs"][0]
    assert webhook["url"].endswith("/hooks/alertmanager")
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    amtool = shutil.which("amtool")
    if amtool is None:
        return
    token = tmp_path / "breach-token"
    token.write_text("x")
    path = tmp_path / "alertmanager.yml"
    path.write_text(block("yaml").replace("/etc/alertmanager/breach-token", str(token)))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
