"""Progress of a running engine: one bar per step on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from .ledger import StepState

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("orchestrator.progress")
SETTLED = ("sent", "delivered", "failed", "dead", "skipped")


class ProgressView:
    """An ``on_tick`` callback for :class:`~orchestrator.engine.Engine`."""

    def __init__(self, console: Console, *, interval: float = 5.0) -> None:
        self.console = console
        self.tty = console.is_terminal
        self.interval = interval
        self._last = 0.0
        self._bars: dict[tuple[str, str], TaskID] = {}
        self._progress: Progress | None = None
        if self.tty:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), console=console,
            )  # fmt: skip
            self._progress.start()

    def __call__(self, engine: Engine) -> None:
        if not self.tty and time.monotonic() - self._last < self.interval:
            return
        self._last = time.monotonic()
        ledger = engine.ledger
        steps = {(s.incident_id, s.step_id): s for s in ledger.open_steps()
                 if s.state == StepState.RUNNING.value}  # fmt: skip
        for key in self._bars:  # steps that finished since the last tick: show their end
            if key not in steps:
                steps[key] = ledger.step(*key)
        for step in steps.values():
            counts = ledger.delivery_counts(step.incident_id).get(step.step_id, {})
            settled = sum(counts.get(k, 0) for k in SETTLED)
            total = max(step.fanout_rows, sum(counts.values()))
            detail = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
            key = (step.incident_id, step.step_id)
            if self._progress is not None:
                if key not in self._bars:
                    self._bars[key] = self._progress.add_task(
                        f"{step.incident_id} {step.step_id}", total=total, detail=""
                    )
                self._progress.update(self._bars[key], completed=settled, total=total,
                                      detail=detail)  # fmt: skip
            else:
                log.info(
                    "progress",
                    extra={
                        "incident": step.incident_id,
                        "step": step.step_id,
                        "settled": settled,
                        "total": total,
                        **counts,
                    },
                )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
