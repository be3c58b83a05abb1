"""The engine: the process that carries live incidents out over time.

APScheduler is the alarm clock: each scheduled step becomes a job at its due time, and a short
interval job re-reads the ledger (new incidents, approvals, restarts). The ledger is the source of
truth: a restart re-arms every pending step, fires the ones whose time passed (or records them
missed when the playbook says ``misfire: skip``), resumes interrupted fan-outs after their last
recorded row, and reclaims deliveries whose lease expired.

Several engines (on several hosts) may share one ledger: each registers as a worker
(:mod:`orchestrator.workers`), a step's fan-out is leased to one of them and taken over only when
that one is dead, and on PostgreSQL they pace each notifier together and wake each other when
new work arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .campaign import Campaign
from .collector import tune_collector
from .dispatch import Dispatcher, DispatchSettings
from .errors import BreachError, LeaseLost
from .ledger import FALLBACK_SUFFIX, Step, StepState, now
from .workers import Presence

if TYPE_CHECKING:
    from .session import Breach

log = logging.getLogger(__name__)

FACTS_RECHECK_SECONDS = 5.0
#: fallback triggers that depend on provider receipts arriving after the send
RECEIPT_TRIGGERS = {"bounce", "undelivered", "no_receipt"}
#: a failed fan-out (audience unreadable...) is tried again after this long, not every tick
FANOUT_RETRY_SECONDS = 60.0
#: a step that came due longer ago than this while nothing ran is "missed" under misfire: skip
MISFIRE_GRACE = timedelta(minutes=5)


@dataclass
class EngineReport:
    """What one ``run`` did."""

    fired: list[str] = field(default_factory=list)
    finished_incidents: list[str] = field(default_factory=list)
    #: ``INCIDENT/STEP: error`` of each step a configuration error stopped
    blocked: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Engine:
    """Fires due steps and dispatches their deliveries until stopped (or idle)."""

    def __init__(
        self,
        breach: Breach,
        *,
        settings: DispatchSettings | None = None,
        rescan_seconds: float = 1.0,
        rng: random.Random | None = None,
        on_tick: Callable[[Engine], None] | None = None,
        kind: str = "run",
    ) -> None:
        """``kind`` is how the worker registry shows this process: ``run`` or ``serve``."""
        self.breach = breach
        self.ledger = breach.ledger
        self.host = breach.host
        self.rescan_seconds = rescan_seconds
        settings = settings or DispatchSettings()
        self.presence = Presence(self.ledger, kind=kind, timeout=settings.worker_timeout)
        self.dispatcher = Dispatcher(
            ledger=self.ledger,
            host=self.host,
            campaign_for=self.campaign,
            settings=settings,
            rng=rng,
            on_blocked=self._blocked,
            wakeup=self.presence.wakeup,
        )
        self.report = EngineReport()
        self.on_tick = on_tick
        self._campaigns: dict[str, Campaign] = {}
        self._checked: dict[str, float] = {}
        self._failed: dict[tuple[str, str], float] = {}
        self._fanouts: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._armed: set[tuple[str, str]] = set()
        self._stop = asyncio.Event()
        self._rescanning = asyncio.Lock()
        # idle() and the housekeeping loop both sweep, each from a worker thread: one at a time,
        # or two sweeps fan out the same fallback and record its rows as duplicates
        self._sweeping = threading.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._listener: Callable[[str], object] = lambda _what: None
        self._release_collector: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[Any]] = []

    # -- campaigns ----------------------------------------------------------------------------

    def campaign(self, incident_id: str) -> Campaign:
        """The loaded incident; reloaded when its facts changed (checked every few seconds:
        dispatch asks for every message it sends)."""
        cached = self._campaigns.get(incident_id)
        checked = self._checked.get(incident_id, 0.0)
        clock = time.monotonic()
        if cached is not None and clock - checked < FACTS_RECHECK_SECONDS:
            return cached
        row = self.ledger.incident(incident_id)
        if cached is None or cached.facts_version != row.facts_version:
            cached = Campaign(self.breach, row)
            self._campaigns[incident_id] = cached
        self._checked[incident_id] = clock
        return cached

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the clock and the dispatcher in the running event loop."""
        self._stop.clear()
        self._release_collector()  # started twice: one tuning, as for one start
        self._release_collector = tune_collector()
        loop = asyncio.get_running_loop()
        # work committed by this process (a fan-out's batch, an approval) wakes its idle loops
        # at once; other workers hear of it by NOTIFY, or at their next poll
        self._listener = lambda _what: loop.call_soon_threadsafe(self.presence.wakeup.notify)
        self.ledger.listeners.append(self._listener)
        await self.presence.start(self._stop)
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.start()
        self._tasks = [asyncio.create_task(self.dispatcher.run(self._stop)),
                       asyncio.create_task(self._housekeeping())]  # fmt: skip
        await self.rescan()

    async def stop(self) -> None:
        """Stop claiming work; let batches in flight settle."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fanouts:
            await asyncio.gather(*self._fanouts.values(), return_exceptions=True)
        for notifier in self.host.active_notifiers():
            await notifier.aclose()
        await self.presence.stop()
        if self._listener in self.ledger.listeners:
            self.ledger.listeners.remove(self._listener)
        self._release_collector()

    async def run(self, *, until_idle: bool = False) -> EngineReport:
        """Run until stopped, or (``until_idle``) until nothing is left to do without waiting
        for a future step or a human approval."""
        await self.start()
        try:
            while not self._stop.is_set():
                # the check runs when the dispatcher runs dry, or a quarter second on
                await self.dispatcher.drained.sleep(self._stop, 0.25)
                if until_idle and await self.ledger.in_thread(self.idle):
                    break
        finally:
            await self.stop()
            if self.on_tick is not None:
                self.on_tick(self)  # the final picture
        self.report.counts = dict(self.dispatcher.counts)
        return self.report

    def request_stop(self) -> None:
        self._stop.set()

    def idle(self) -> bool:
        """Nothing to do now: no fan-out running, nothing to send, no step due, no fallback
        ready (a step waiting for receipts or a future step does not count)."""
        if any(not t.done() for t in self._fanouts.values()):
            return False
        if self.ledger.active_notifiers():
            return False
        current = now()
        for step in self.ledger.open_steps():
            if step.state == StepState.RUNNING.value and not step.fanout_done:
                return False
            if step.state == StepState.SCHEDULED.value and (step.due_at or current) <= current:
                return False
        hold = self.fallback_sweep()
        if self.ledger.active_notifiers():
            return False  # the sweep just queued fallbacks
        self.ledger.finish_steps(hold)
        self.report.finished_incidents += self.ledger.finish_incidents()
        return True

    def fallback_sweep(self) -> set[tuple[str, str]]:
        """Queue fallbacks for people whose delivery failed or went unconfirmed past the step's
        ``after``, and finish the steps that owe none any more.

        Returns every step with after-the-fact fallbacks: the generic ``finish_steps`` must
        leave them alone, because a delivery settling as failed between its check and a sweep
        would otherwise close the step with that person's fallback never sent.
        """
        with self._sweeping:
            return self._sweep_fallbacks()

    def _sweep_fallbacks(self) -> set[tuple[str, str]]:
        hold: set[tuple[str, str]] = set()
        current = now()
        for step in self.ledger.open_steps():
            if step.state != StepState.RUNNING.value or not step.fanout_done:
                continue
            campaign = self.campaign(step.incident_id)
            spec = campaign.playbook.step(step.step_id)
            fallback = spec.fallback if spec is not None else None
            triggers = [t for t in fallback.on if t != "unreachable"] if fallback else []
            if spec is None or fallback is None or not triggers:
                continue
            key = (step.incident_id, step.step_id)
            hold.add(key)
            window_start = current - fallback.after
            # Order matters: once nothing is in flight, no delivery can newly fail except by a
            # receipt, so an empty candidate list read after that is final.
            if self.ledger.step_active(*key):
                continue
            ready = self.ledger.fallback_candidates(*key, triggers, older_than=window_start)
            if ready:
                campaign.run_fallback(spec, set(ready))
            elif not (RECEIPT_TRIGGERS & set(triggers)) or not self.ledger.sent_since(
                *key, window_start
            ):
                self.ledger.update_step(*key, state=StepState.DONE.value, finished_at=current)
                campaign.emit("step.done", step.step_id)
        return hold

    def _blocked(
        self, notifier: str, mode: str, rows: Sequence[dict[str, Any]], error: str
    ) -> None:
        """A notifier lacks settings for ``mode``: mark the steps whose deliveries it failed
        ``blocked``, once each, with the error (which names the setting) on the timeline."""
        for incident_id, step_id in sorted({(r["incident_id"], r["step_id"]) for r in rows}):
            step_id = step_id.removesuffix(FALLBACK_SUFFIX)
            step = self.ledger.step(incident_id, step_id)
            if step.state == StepState.BLOCKED.value:
                continue
            detail = {**step.detail, "blocked": {"notifier": notifier, "mode": mode,
                                                 "error": error}}  # fmt: skip
            self.ledger.update_step(incident_id, step_id, state=StepState.BLOCKED.value,
                                    finished_at=now(), detail=detail)  # fmt: skip
            self.campaign(incident_id).emit("step.blocked", step_id, notifier=notifier,
                                            mode=mode, error=error)  # fmt: skip
            self.report.blocked.append(f"{incident_id}/{step_id}: {error}")

    # -- the clock ----------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            try:
                await self.rescan()
                hold = await self.ledger.in_thread(self.fallback_sweep)
                done = await self.ledger.in_thread(self.ledger.finish_steps, hold)
                for incident_id, step_id in done:
                    self.campaign(incident_id).emit("step.done", step_id)
                finished = await self.ledger.in_thread(self.ledger.finish_incidents)
                for incident_id in finished:
                    self.campaign(incident_id).emit("incident.finished")
                self.report.finished_incidents += finished
                if self.on_tick is not None:
                    self.on_tick(self)
            except BreachError as exc:
                log.error("housekeeping failed", extra={"error": str(exc)})
            await self.presence.wakeup.sleep(self._stop, self.rescan_seconds)

    async def rescan(self) -> None:
        """Arm, fire or resume every open step the ledger knows (one rescan at a time)."""
        async with self._rescanning:
            await self._rescan()

    async def _rescan(self) -> None:
        current = now()
        steps = await self.ledger.in_thread(self.ledger.open_steps)
        live: set[str] = set()
        if any(s.fanout_owner not in (None, self.presence.id) for s in steps):
            live = {w["id"] for w in await self.ledger.in_thread(self.ledger.live_workers)}
        for step in steps:
            key = (step.incident_id, step.step_id)
            if key in self._fanouts and not self._fanouts[key].done():
                continue
            if step.fanout_owner not in (None, self.presence.id) and step.fanout_owner in live:
                continue  # another worker is on it; taken over only once that one is dead
            if step.state == StepState.RUNNING.value and not step.fanout_done:
                self._start_fanout(step)  # interrupted by a crash: resume after its last row
            elif step.state == StepState.SCHEDULED.value:
                due = step.due_at or current
                if due <= current and not self._waits_for_earlier(step):
                    self._due(step, current)
                elif key not in self._armed and self._scheduler is not None:
                    self._armed.add(key)
                    self._scheduler.add_job(self.rescan, "date", run_date=due,
                                            id=f"{key[0]}:{key[1]}", replace_existing=True,
                                            misfire_grace_time=None)  # fmt: skip
            elif step.state == StepState.AWAITING_APPROVAL.value and step.approved_by:
                self._start_fanout(step)

    def _waits_for_earlier(self, step: Step) -> bool:
        """A step whose condition reads ``counts`` waits while an earlier step of its incident
        is unsettled: after an outage several steps fall due at once, and "unreachable" must
        mean what the earlier steps could not do, not what they have not done yet."""
        spec = self.campaign(step.incident_id).playbook.step(step.step_id)
        if spec is None or not spec.condition or "counts" not in spec.condition:
            return False
        for other in self.ledger.steps(step.incident_id):
            if other.position >= step.position:
                continue
            if other.state in (StepState.SCHEDULED.value, StepState.RUNNING.value):
                return True
        return False

    def _due(self, step: Step, current: Any) -> None:
        campaign = self.campaign(step.incident_id)
        spec = campaign.playbook.step(step.step_id)
        late = current - (step.due_at or current)
        if spec is not None and spec.misfire == "skip" and late > MISFIRE_GRACE:
            self.ledger.update_step(step.incident_id, step.step_id, state=StepState.MISSED.value,
                                    finished_at=current)  # fmt: skip
            campaign.emit("step.missed", step.step_id, late_seconds=int(late.total_seconds()))
            return
        self._start_fanout(step)

    def _start_fanout(self, step: Step) -> None:
        key = (step.incident_id, step.step_id)
        if time.monotonic() - self._failed.get(key, -FANOUT_RETRY_SECONDS) < FANOUT_RETRY_SECONDS:
            return
        self.report.fired.append(f"{key[0]}/{key[1]}")
        task = asyncio.create_task(self.ledger.in_long_thread(self._fire, step))
        task.add_done_callback(lambda t: self._fanout_done(key, t))
        self._fanouts[key] = task

    def _fanout_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        if isinstance(error, LeaseLost):  # not a failure: another worker carries on from here
            log.warning("fan-out taken over", extra={"incident": key[0], "step": key[1],
                                                     "error": str(error)})  # fmt: skip
            return
        self._failed[key] = time.monotonic()
        message = str(error) if isinstance(error, BreachError) else repr(error)
        log.error("fan-out failed", extra={"incident": key[0], "step": key[1], "error": message})
        with contextlib.suppress(BreachError):  # the incident itself may be what broke
            self.campaign(key[0]).emit("step.failed", key[1], error=message,
                                       retry_in_seconds=FANOUT_RETRY_SECONDS)  # fmt: skip

    def _fire(self, seen: Step) -> None:
        # The row the rescan saw may be stale by now (another tick, an earlier task that just
        # finished): decide on the ledger's current row, so a step is never fanned out twice.
        step = self.ledger.step(seen.incident_id, seen.step_id)
        if not _fireable(step):
            return
        # One worker fans a step out. Whoever holds it now, the row read after taking it is the
        # truth: a dead owner's last recorded batch is where this one resumes.
        if not self.ledger.take_fanout(step.incident_id, step.step_id):
            return
        step = self.ledger.step(seen.incident_id, seen.step_id)
        if not _fireable(step):
            return
        campaign = self.campaign(step.incident_id)
        spec = campaign.playbook.step(step.step_id)
        if spec is None:
            raise BreachError(f"incident {step.incident_id}: playbook has no step {step.step_id}")
        resuming = step.state == StepState.RUNNING.value
        campaign.run_step(
            spec, step.due_at or now(), approved_by=step.approved_by,
            resume_after=step.fanout_rows if resuming else 0,
            evaluated=step.condition_result if resuming else None,
        )  # fmt: skip


def _fireable(step: Step) -> bool:
    """Whether ``step`` still has a fan-out to start or resume."""
    if step.state == StepState.RUNNING.value:
        return not step.fanout_done
    return step.state in (StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value)
