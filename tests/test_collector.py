"""The collector's run tuning: taken by the first run, given back by the last, and never left
behind in a process that embeds the engine."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from engine_support import NOTIFIERS

from orchestrator.collector import RUN_THRESHOLDS, tune_collector
from orchestrator.pluginhost import PluginHost
from orchestrator.session import Breach


def test_overlapping_runs_tune_once_and_the_last_one_restores() -> None:
    before = gc.get_threshold()
    assert before != RUN_THRESHOLDS and gc.get_freeze_count() == 0
    outer = tune_collector()
    assert gc.get_threshold() == RUN_THRESHOLDS
    frozen = gc.get_freeze_count()
    assert frozen > 0  # the objects alive at the start: modules, this test's frames
    inner = tune_collector()
    inner()
    inner()  # twice: still one release
    assert gc.get_threshold() == RUN_THRESHOLDS and gc.get_freeze_count() == frozen
    outer()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_an_engine_tunes_the_collector_while_it_runs(tmp_path: Path) -> None:
    before = gc.get_threshold()
    engine = Breach(
        f"sqlite:///{tmp_path / 'l.db'}", host=PluginHost(plugins_dir=NOTIFIERS)
    ).engine()
    seen: list[tuple[int, int, int]] = []

    async def run() -> None:
        await engine.start()
        try:
            seen.append(gc.get_threshold())
        finally:
            await engine.stop()

    asyncio.run(run())
    assert seen == [RUN_THRESHOLDS]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
