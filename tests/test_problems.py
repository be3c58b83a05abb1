"""pydantic errors as located problems: one translator for playbooks and the server config.

The keys an unknown key is compared with come from the models' annotations, however deep the
model sits (in a dict, a list, an ``X | None``), so a field added to a model is suggested with no
other change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, create_model

from orchestrator.errors import Problem
from orchestrator.playbook import (
    BeforeDeadline,
    FactSpec,
    Fallback,
    Limits,
    NoticeText,
    Playbook,
    Step,
)
from orchestrator.pluginhost import PluginHost
from orchestrator.problems import known_keys, model_problems
from orchestrator.regimes import Deadline
from orchestrator.server.config import ConfigInvalid, load_config
from orchestrator.server.config.schema import (
    AlertmanagerAuthSection,
    AudienceSection,
    AuthSection,
    ConfigFile,
    GenericAuthSection,
    RouteSection,
    ServerSection,
)
from orchestrator.validation import validate_text

MINIMAL = (Path(__file__).parent / "fixtures" / "playbooks" / "minimal.yaml").read_text("utf-8")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def short(problems: Iterable[Problem]) -> list[str]:
    return [f"{p.line}:{p.column}: {p.message}" for p in problems]


def playbook_problems(text: str, host: PluginHost) -> list[str]:
    return short(validate_text(text, "p.yaml", host=host)[1])


def config_problems(tmp_path: Path, text: str, host: PluginHost) -> list[str]:
    path = tmp_path / "breach.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path, host=host)
    return short(caught.value.problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "required: true,", "required: true, requird: true,",
            "9:51: unknown key 'requird'; did you mean 'required'?", id="dict-of-models",
        ),
        pytest.param(
            "    channel: sms\n", "    channel: sms\n    chanel: sms\n",
            "31:5: unknown key 'chanel'; did you mean 'channel'?", id="list-of-models",
        ),
        pytest.param(
            "fallback: email", "fallback: {channel: email, aftr: 1h}",
            "32:32: unknown key 'aftr'; did you mean 'after'?", id="optional-model",
        ),
        pytest.param(
            "    regime: gdpr-art33\n",
            "    regime: gdpr-art33\n    deadline: {amount: 3, unit: hours, amout: 2}\n",
            "28:40: unknown key 'amout'; did you mean 'amount'?", id="list-then-optional-model",
        ),
        pytest.param(
            "margin: 6h}", "margin: 6h, marginn: 1h}",
            "36:44: unknown key 'marginn'; did you mean 'margin'?", id="union-member-model",
        ),
    ],
)  # fmt: skip
def test_playbook_unknown_nested_key_gets_the_models_suggestion(
    old: str, new: str, expected: str, host: PluginHost
) -> None:
    assert old in MINIMAL
    assert playbook_problems(MINIMAL.replace(old, new, 1), host) == [expected]


def test_a_time_in_no_form_is_one_message(host: PluginHost) -> None:
    assert playbook_problems(MINIMAL.replace("at: +0m", "at: tomorrow"), host) == [
        "31:9: steps.0.at: invalid time; write an offset like '+24h', an ISO time, or "
        "{before_deadline: REGULATOR, margin: 6h}"
    ]
    # a mapping is the before_deadline form: only its own problem is reported
    text = MINIMAL.replace("before_deadline: dpa, margin: 6h", "margin: 6h")
    assert playbook_problems(text, host) == [
        "36:9: steps.1.at.before_deadline: required but missing"
    ]


CONFIG = """\
[auth.alertmanager]
tokenfile = "secrets/token"

[audiences.customers]
source = "people.csv"
qeury = "SELECT 1"

[[routes]]
name = "ransomware"
hook = "alertmanager"
playbook = "playbook.yaml"
audience = "customers"
mode = "dry-run"
awareat = "startsAt"
"""


def test_config_unknown_nested_key_gets_the_models_suggestion(
    tmp_path: Path, host: PluginHost
) -> None:
    assert config_problems(tmp_path, CONFIG, host) == [
        # Model | None
        "2:1: auth.alertmanager.tokenfile: unknown key 'tokenfile'; did you mean 'token_file'?",
        # dict[str, Model]
        "6:1: audiences.customers.qeury: unknown key 'qeury'; did you mean 'query'?",
        # list[Model]
        "14:1: routes[0] ('ransomware').awareat: unknown key 'awareat'; did you mean 'aware_at'?",
    ]


@pytest.mark.parametrize(
    ("root", "path", "model"),
    [
        (ConfigFile, (), ConfigFile),
        (ConfigFile, ("server",), ServerSection),
        (ConfigFile, ("auth",), AuthSection),
        (ConfigFile, ("auth", "alertmanager"), AlertmanagerAuthSection),
        (ConfigFile, ("auth", "generic"), GenericAuthSection),
        (ConfigFile, ("audiences", "any-name"), AudienceSection),
        (ConfigFile, ("routes", 3), RouteSection),
        (Playbook, (), Playbook),
        (Playbook, ("facts", "affected_count"), FactSpec),
        (Playbook, ("notice", "en"), NoticeText),
        (Playbook, ("steps", 0), Step),
        (Playbook, ("steps", 0, "fallback"), Fallback),
        (Playbook, ("steps", 0, "at"), BeforeDeadline),
        (Playbook, ("regulators", 1, "deadline"), Deadline),
        (Playbook, ("limits",), Limits),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_known_keys_are_the_fields_of_the_model_at_that_place(
    root: type[BaseModel], path: tuple[str | int, ...], model: type[BaseModel]
) -> None:
    assert known_keys(root, path) == sorted(model.model_fields)


def test_a_place_that_takes_any_key_knows_none() -> None:
    assert known_keys(ConfigFile, ("routes", 0, "match")) == []
    assert known_keys(Playbook, ("steps", 0, "channel")) == []


class _Flat:
    """A document whose every path is at 1:1 and named with dots."""

    file = "f"

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        return (1, 1)

    def describe(self, path: Sequence[str | int], *, key: bool = False) -> str:
        return ".".join(map(str, path))


def test_a_field_added_to_a_model_is_suggested_with_no_other_change() -> None:
    extended = create_model("Extended", __base__=RouteSection, priority=(int, 0))
    root = create_model("Root", __base__=ConfigFile, routes=(list[extended], []))  # type: ignore[valid-type]
    assert known_keys(root, ("routes", 0)) == sorted(extended.model_fields)
    assert "priority" in known_keys(root, ("routes", 0))
    route: dict[str, Any] = {"name": "r", "hook": "generic", "playbook": "p.yaml",
                             "audience": "a", "mode": "live", "priorty": 2}  # fmt: skip
    data = {"routes": [route]}
    with pytest.raises(ValidationError) as caught:
        root.model_validate(data)
    assert model_problems(caught.value, data, root, _Flat()) == [
        Problem("f", 1, 1, "routes.0.priorty: unknown key 'priorty'; did you mean 'priority'?")
    ]
