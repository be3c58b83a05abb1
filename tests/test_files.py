"""orchestrator.plugin.files: atomic writes, the folder lock, receipts of file-writing notifiers."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path
from typing import Any, ClassVar

import pytest
from factories import make_public_message

from orchestrator.errors import BreachError, ConfigurationError
from orchestrator.message import Message
from orchestrator.notifier import Notifier, Outcome, Setting
from orchestrator.plugin.files import atomic_write, exclusive, setting_folder, write_each


def test_atomic_write_replaces_whole_files_and_skips_identical_ones(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "notice.html"
    assert atomic_write(path, b"one") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private unless asked otherwise
    os.utime(path, (1, 1))
    assert atomic_write(path, b"one", 0o644) is False  # untouched: same bytes, same mtime
    assert path.stat().st_mtime == 1
    assert atomic_write(path, b"two", 0o644) is True
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["notice.html"]  # no temporary file left


def test_exclusive_creates_its_lock_file_and_can_be_taken_again(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / ".feed.lock"
    with exclusive(lock):
        assert lock.exists()
    with exclusive(lock):
        pass


class _Folder(Notifier):
    name: ClassVar[str] = "folder-test"
    channel: ClassVar[str] = "test"
    settings_spec: ClassVar[tuple[Setting, ...]] = (Setting("TEST_DIR", "where files go"),)

    def build_payload(self, message: Message) -> dict[str, Any]:
        return {}


def test_setting_folder_says_what_the_folder_is_for() -> None:
    assert setting_folder(_Folder({"TEST_DIR": "/srv/x"}), "TEST_DIR", "write") == Path("/srv/x")
    with pytest.raises(ConfigurationError, match="'folder-test' needs TEST_DIR to file it"):
        setting_folder(_Folder(), "TEST_DIR", "file it")


def test_write_each_turns_every_outcome_into_one_receipt() -> None:
    failures: dict[str, Exception] = {
        "d-denied": PermissionError(errno.EACCES, "denied"),
        "d-full": OSError(errno.ENOSPC, "disk full"),
        "d-bad": BreachError("cannot build it"),
    }

    async def write(message: Message) -> str:
        if message.delivery_id in failures:
            raise failures[message.delivery_id]
        return f"{message.delivery_id}.json"

    # a public message's delivery id is "d-<step id>"
    batch = [make_public_message(step_id=key.removeprefix("d-")) for key in ["d-ok", *failures]]
    receipts = asyncio.run(write_each(batch, write))
    assert [(r.delivery_id, r.outcome, r.provider_id) for r in receipts] == [
        ("d-ok", Outcome.SENT, "d-ok.json"),
        ("d-denied", Outcome.PERMANENT, None),
        ("d-full", Outcome.TRANSIENT, None),
        ("d-bad", Outcome.PERMANENT, None),
    ]
    assert receipts[3].error == "cannot build it"


def test_write_each_stops_at_a_configuration_error() -> None:
    async def write(message: Message) -> str:
        raise ConfigurationError("set TEST_DIR")

    with pytest.raises(ConfigurationError):
        asyncio.run(write_each([make_public_message()], write))
