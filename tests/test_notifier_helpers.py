"""What the Notifier base class gives every plugin: required settings, durations, a clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from orchestrator.errors import ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Notifier, Setting


class _Pager(Notifier):
    name: ClassVar[str] = "pager-test"
    channel: ClassVar[str] = "pager"
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        Setting("PAGER_KEY", "API key", secret=True),
        Setting("PAGER_FROM", "Sender"),
        Setting("PAGER_TIMEOUT", "Seconds", required=False),
    )

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {}


def test_require_settings_names_every_missing_one() -> None:
    with pytest.raises(ConfigurationError, match=r"^pager-test: set PAGER_KEY and PAGER_FROM to"):
        _Pager().require_settings()
    _Pager({"PAGER_KEY": "k", "PAGER_FROM": "f"}).require_settings()


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "soon"])
def test_seconds_setting_refuses_what_is_not_a_positive_number(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"PAGER_TIMEOUT .* not '{raw}'"):
        _Pager({"PAGER_TIMEOUT": raw}).seconds_setting("PAGER_TIMEOUT", 30.0)


def test_seconds_setting_reads_the_value_or_the_default() -> None:
    assert _Pager({"PAGER_TIMEOUT": "2.5"}).seconds_setting("PAGER_TIMEOUT", 30.0) == 2.5
    assert _Pager({"PAGER_TIMEOUT": ""}).seconds_setting("PAGER_TIMEOUT", 30.0) == 30.0


def test_the_clock_is_the_system_clock_unless_one_is_given() -> None:
    fixed = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    assert _Pager(clock=lambda: fixed).clock() == fixed
    now = _Pager().clock()
    assert now.tzinfo is UTC
    assert abs((now - datetime.now(UTC)).total_seconds()) < 60
