"""The garbage collector, tuned while an engine or a fan-out runs.

A delivery run allocates at a furious rate (requests, receipts, ledger rows), and most of it dies
young, but with 64 requests in flight much of it lives just long enough to be promoted. With
CPython's default thresholds (700, 10, 10) the collector then ran about 1,300 young and a dozen
full collections per 10,000 SMS, each full one walking the 130,000 objects of the loaded modules:
a quarter of the run's CPU (``benchmarks/README.md`` shows how it was measured).

While any engine or fan-out runs, this module:

- freezes the objects alive at its start (modules, plugins, playbooks: they live as long as the
  process), so full collections no longer walk them;
- collects the young generation every 50,000 allocations instead of 700, which bounds the
  cyclic garbage waiting at any moment to a few megabytes.

When the last of them in the process ends, the thresholds are restored and the frozen objects
return to the collector's care, so a process that embeds the engine gets its own settings back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

__all__ = ["RUN_THRESHOLDS", "tune_collector"]

#: the collector's thresholds during a run
RUN_THRESHOLDS = (50_000, 20, 100)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


def tune_collector() -> Callable[[], None]:
    """Tune the collector for a run; returns the function that gives the tuning back.

    Runs may overlap (a fan-out inside an engine, several engines in one test process): the
    first to start tunes, the last to end restores. Calling the returned function twice is harmless.
    """
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*RUN_THRESHOLDS)
        _holders += 1
    released = False

    def release() -> None:
        global _holders, _saved
        nonlocal released
        with _lock:
            if released:
                return
            released = True
            _holders -= 1
            if _holders == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                gc.unfreeze()
                _saved = None

    return release
