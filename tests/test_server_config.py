"""The server config: a broken file stops the start with every problem, located."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    BASE,
    GENERIC_ROUTE,
    HERE,
    PLAYBOOK,
    load,
    write_config,
)

from orchestrator.server.config import ConfigInvalid


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        load(path)
    return [str(p) for p in caught.value.problems]


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_fixture_config_loads_with_paths_relative_to_it() -> None:
    config = load(HERE / "breach.toml")
    assert [r.name for r in config.routes] == ["ransomware", "dlp-ransomware"]
    assert config.force_mode == "dry-run"
    assert config.outbox == HERE / "outbox"
    assert config.routes[0].playbook_path.resolve() == PLAYBOOK.resolve()
    assert config.audiences["customers"].spec == str(HERE / "people.csv")
    assert config.max_body_bytes == 1_048_576


def test_toml_syntax_error_is_located(tmp_path: Path) -> None:
    path = tmp_path / "breach.toml"
    path.write_text('[server]\nport = 8080\nhost = "127.0.0.1\n')
    (found,) = problems(path)
    assert found.startswith(f"{path}:3:")
    assert "TOML syntax" in found


def test_unknown_key_names_route_index_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE.replace("dedupe =", "dedup ="))
    (found,) = problems(path)
    assert found.startswith(f"{path}:{line_of(path, 'dedup =')}:1: ")
    assert "routes[1] ('dlp-ransomware').dedup: unknown key 'dedup'" in found
    assert "did you mean 'dedupe'?" in found


def test_wrong_value_is_located(tmp_path: Path) -> None:
    path = write_config(tmp_path, ALERTMANAGER_ROUTE, mode="sometimes")
    (found,) = problems(path)
    assert found.startswith(f"{path}:{line_of(path, 'mode = ')}:1: routes[0] ('ransomware').mode:")
    assert "'live' or 'dry-run'" in found


def test_every_semantic_problem_is_reported_at_once(tmp_path: Path) -> None:
    route = (
        ALERTMANAGER_ROUTE.replace('audience = "customers"', 'audience = "customer"')
        .replace('affected_count = "annotations', 'afected_count = "annotations')
        .replace('at_least = "high"', 'at_least = "sev1"')
    )
    path = write_config(tmp_path, route)
    found = problems(path)
    assert len(found) == 3
    assert any(
        f":{line_of(path, 'audience = ')}:" in p and "did you mean 'customers'?" in p for p in found
    )
    assert any(
        f":{line_of(path, 'afected_count')}:" in p and "did you mean 'affected_count'?" in p
        for p in found
    )
    assert any(
        f":{line_of(path, 'at_least')}:" in p
        and "routes[0] ('ransomware').match.labels.severity: unknown severity 'sev1'" in p
        for p in found
    )


def test_unreadable_secret_file_is_located(tmp_path: Path) -> None:
    path = tmp_path / "breach.toml"
    path.write_text(BASE.replace(str(HERE / "secrets" / "generic-secret"), "missing.key"))
    (found,) = problems(path)
    assert found.startswith(f"{path}:{line_of(path, 'missing.key')}:1: auth.generic.secret_file")
    assert str(tmp_path / "missing.key") in found  # relative to the config file


def test_unset_secret_variable_is_named_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BREACH_TEST_UNSET", raising=False)
    path = tmp_path / "breach.toml"
    path.write_text(
        BASE.replace(
            f'secret_file = "{HERE / "secrets" / "generic-secret"}"',
            'secret_env = "BREACH_TEST_UNSET"',
        )
    )
    (found,) = problems(path)
    assert "environment variable BREACH_TEST_UNSET is not set" in found


def test_routes_need_their_hooks_credentials(tmp_path: Path) -> None:
    path = tmp_path / "breach.toml"
    without = BASE.split("[auth.alertmanager]")[0] + "[audiences.customers]"
    path.write_text(
        without + BASE.split("[audiences.customers]")[1] + ALERTMANAGER_ROUTE.format(mode="dry-run")
    )
    (found,) = problems(path)
    assert "[auth.alertmanager] is missing" in found


def test_broken_playbook_stops_the_start_with_its_own_locations(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = PLAYBOOK.read_text("utf-8").replace("channel: email", "channel: telegram")
    broken.write_text(text.replace("{{ facts.systems_affected", "{{ facts.systems_afected"))
    path = write_config(tmp_path, ALERTMANAGER_ROUTE.replace(str(PLAYBOOK), "broken.yaml"))
    found = problems(path)
    assert any(p.startswith(f"{path}:{line_of(path, 'broken.yaml')}:1: routes[0]") for p in found)
    in_playbook = [p for p in found if p.startswith(f"{broken}:")]
    assert any("telegram" in p for p in in_playbook)
    assert any("systems_afected" in p for p in in_playbook)


def test_breach_serve_with_a_broken_config_prints_located_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, ALERTMANAGER_ROUTE.replace("hook = ", "hooks = "))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--config",
            str(path),
            "--port",
            "0",
            "--db",
            f"sqlite:///{tmp_path / 'ledger.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:{line_of(path, '[[routes]]')}:1: routes[0] ('ransomware').hook: required but "
        "missing",
        f"{path}:{line_of(path, 'hooks = ')}:1: routes[0] ('ransomware').hooks: unknown key "
        "'hooks'; did you mean 'hook'?",
    ]


def test_breach_serve_without_a_config_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "breach.toml:0:0: config file not found" in result.stderr
    assert "Traceback" not in result.stderr
