"""Dispatch: pending deliveries out through their notifiers, at a pace, with retries.

One worker per notifier claims due rows from the ledger under a lease, rebuilds each message from
its row, paces batches so the notifier's rate is never exceeded, keeps a bounded number of batches
in flight, and settles every receipt: sent, failed (permanent), pending again after a jittered
backoff that honours Retry-After, or dead with the reason once attempts run out. A notifier whose
whole batches keep failing opens a circuit: its worker stops claiming until the cooldown ends;
each opening and closing is recorded on the timeline of the incidents whose batch decided it, so
``breach status`` in another process shows the breaker and its next probe.

A :class:`~orchestrator.errors.ConfigurationError` from a notifier is never retried: settings do
not change while the process runs, so the notifier is blocked for that mode, every delivery it
would send in that mode fails with the setting named, and ``on_blocked`` tells the engine which
steps to mark.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from jinja2 import TemplateError

from .campaign import Campaign
from .circuit import CircuitBreaker, CircuitState
from .errors import BreachError, ConfigurationError, LedgerUnavailable
from .events import IncidentEvent
from .ledger import DeliveryState, Ledger, now
from .message import Message
from .notifier import Mode, Notifier, Outcome, Receipt
from .pacing import Pacer, max_batch_for
from .pluginhost import PluginHost
from .retry import RetryPolicy
from .sharedpacing import SharedPacer
from .workers import DEFAULT_WORKER_TIMEOUT, Wakeup, sleep_unless

log = logging.getLogger(__name__)

#: the next chunk is claimed while one is sent when the notifier's rate sends a chunk within this
PREFETCH_SECONDS = 1.0
#: rows one claim takes at most beyond a batch per request slot (see ``Dispatcher._worker``)
CLAIM_ROWS = 1000
#: batches answered but not yet settled, per request slot (see ``Dispatcher._worker``)
SETTLE_BACKLOG = 2
#: A row whose sends were lost (its lease ran out, or no answer came) this many times, or
#: ``max_attempts`` times when that is more, is not sent again: whatever keeps a send from being
#: recorded (a settlement the ledger refuses, a message that crashes its worker) then costs that
#: many sends, not one a lease forever. Not fewer than three: a kill loses at most one send of
#: a row, and ``--max-attempts 1`` must not turn a row claimed before a kill into a dead one.
MIN_LOST_SENDS = 3


#: (notifier, mode, the rows that failed, the error): a notifier lacks settings for a mode
BlockedCallback = Callable[[str, Mode, Sequence[dict[str, Any]], str], None]


class DispatchObserver(Protocol):
    """What a monitor (``/metrics``) is told as batches settle."""

    def settled(self, notifier: str, state: str, count: int) -> None:
        """``count`` deliveries of ``notifier`` settled as ``state`` (sent, failed, retried,
        dead, blocked)."""

    def answered(self, notifier: str, seconds: float) -> None:
        """One batch of ``notifier`` took ``seconds`` to answer (or to fail)."""


@dataclass
class DispatchSettings:
    """How hard to push. Rates are messages per second per notifier (default: its own)."""

    rates: Mapping[str, float] = field(default_factory=dict)
    concurrency: int = 4
    lease_seconds: float = 60.0
    send_timeout: float = 30.0
    poll_interval: float = 0.25
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = 5
    circuit_cooldown: float = 30.0
    circuit_max_cooldown: float = 300.0
    #: seconds without a heartbeat after which a worker is dead and its fan-outs are taken over
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT


class Dispatcher:
    """Runs one worker per notifier that has deliveries pending, until ``stop`` is set."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        host: PluginHost,
        campaign_for: Callable[[str], Campaign],
        settings: DispatchSettings | None = None,
        rng: random.Random | None = None,
        on_blocked: BlockedCallback | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.ledger = ledger
        #: idle loops sleep on it: new work announced by another worker wakes them
        self.wakeup = wakeup or Wakeup()
        self.host = host
        self.campaign_for = campaign_for
        self.settings = settings or DispatchSettings()
        self.rng = rng or random.Random()
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.counts: Counter[str] = Counter()
        self._inflight: set[asyncio.Task[None]] = set()
        self.on_blocked = on_blocked
        self.observer: DispatchObserver | None = None
        #: (notifier, mode) -> the configuration error that blocks it for this process
        self.blocked: dict[tuple[str, Mode], str] = {}
        self._settler = Settler(ledger)
        self._lost_sends = max(MIN_LOST_SENDS, self.settings.policy.max_attempts)
        #: notified whenever the last batch in flight settles: the engine checks for idle then
        self.drained = Wakeup()

    async def run(self, stop: asyncio.Event) -> None:
        """Start workers as notifiers get work; return when ``stop`` is set and sends settled."""
        try:
            while not stop.is_set():
                active = await self.ledger.in_thread(self.ledger.active_notifiers)
                for name in sorted(active):
                    if name not in self.workers and name in self.host.notifier_classes:
                        self.workers[name] = asyncio.create_task(self._worker(name, stop))
                # A fan-out's first rows should not wait long for their worker; once workers
                # run, this only looks for new notifiers.
                await self.wakeup.sleep(stop, 1.0 if self.workers else self.settings.poll_interval)
        finally:
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(*self.workers.values(), return_exceptions=True)
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    def circuit_states(self) -> dict[str, dict[str, Any]]:
        """Notifier -> its breaker's :meth:`~CircuitBreaker.snapshot`."""
        return {name: breaker.snapshot() for name, breaker in self.breakers.items()}

    async def _worker(self, name: str, stop: asyncio.Event) -> None:
        cls = self.host.notifier_classes[name][1]
        notifier = self.host.notifier(cls.channel, name)
        rate = self.settings.rates.get(name, notifier.default_rate)
        batch_size = max_batch_for(rate, notifier.max_batch)
        pacer = self._pacer(name, rate, batch_size)
        breaker = self.breakers.setdefault(name, CircuitBreaker(
            failure_threshold=self.settings.circuit_threshold,
            cooldown=self.settings.circuit_cooldown,
            max_cooldown=self.settings.circuit_max_cooldown))  # fmt: skip
        concurrency = min(self.settings.concurrency, notifier.max_concurrency or 10**6)
        # A slot is a request the provider holds: freed once it answers, so a batch waiting for
        # its settlement (the ledger's write) does not keep the next request back. The batches
        # answered but not yet settled are bounded too: a stalled ledger stops the sending soon,
        # with few messages out that it has not recorded.
        slots = asyncio.Semaphore(concurrency)
        unsettled = asyncio.Semaphore(SETTLE_BACKLOG * concurrency)
        # One claim feeds every free slot, so small batches (SMS: one message a request) do not
        # cost one database round trip each; and as many rows as the rate sends within
        # PREFETCH_SECONDS, up to CLAIM_ROWS, since a claim costs a transaction whatever its size.
        # The lease covers pacing the chunk plus the send; otherwise a slow batch would be
        # reclaimed, and sent twice, while still in flight.
        paced = CLAIM_ROWS if rate is None or math.isinf(rate) else int(rate * PREFETCH_SECONDS)
        chunk = max(batch_size * concurrency, min(paced, CLAIM_ROWS))
        lease = self.settings.lease_seconds + self.settings.send_timeout
        # While a chunk goes out, the next one is claimed, so the slots never wait for the
        # ledger; only where a chunk goes out within a second (its rows wait for their turn
        # under a lease, which must not run out before they are sent).
        ahead = rate is None or chunk <= rate * PREFETCH_SECONDS
        claiming: asyncio.Future[list[dict[str, Any]]] | None = None
        unsent: list[dict[str, Any]] = []
        try:
            while not stop.is_set():
                if not breaker.allow():
                    await sleep_unless(stop, self.settings.poll_interval)
                    continue
                # A half-open breaker allows one probe: claim one batch, not a chunk.
                size = chunk if breaker.state is CircuitState.CLOSED else batch_size
                ahead_of_time = claiming is not None
                if claiming is None:
                    claiming = self._claim(name, size, lease)
                # shielded: a worker stopped mid-claim still learns which rows it holds
                rows = await asyncio.shield(claiming)
                claiming = None
                if ahead_of_time and breaker.state is not CircuitState.CLOSED:
                    await self._unclaim(rows, None)  # claimed before the breaker opened
                    continue
                if not rows:
                    await self.wakeup.sleep(stop, self.settings.poll_interval)
                    continue
                if ahead and len(rows) == chunk and breaker.state is CircuitState.CLOSED:
                    claiming = self._claim(name, chunk, lease)
                unsent = rows
                while unsent:
                    batch = unsent[:batch_size]
                    await unsettled.acquire()
                    await slots.acquire()
                    if not self._blocked_batch(name, batch):  # failing costs the provider nothing
                        await pacer.acquire(len(batch))
                    answered = _once(slots.release)
                    task = asyncio.create_task(self._send(notifier, batch, breaker, answered))
                    unsent = unsent[batch_size:]
                    self._inflight.add(task)
                    task.add_done_callback(self._finished(answered, unsettled))
        finally:
            await self._unclaim(unsent, claiming)

    def _claim(self, name: str, size: int, lease: float) -> asyncio.Future[list[dict[str, Any]]]:
        """Claim in a thread; the future outlives a cancelled waiter (see ``_unclaim``)."""
        return asyncio.ensure_future(self.ledger.in_thread(self.ledger.claim, name, size, lease))

    async def _unclaim(
        self,
        unsent: Sequence[dict[str, Any]],
        claiming: asyncio.Future[list[dict[str, Any]]] | None,
    ) -> None:
        """Give back what a stopping worker claimed and never handed to its notifier: the rest
        of its chunk, and the chunk claimed ahead. It runs to the end even when the worker is
        cancelled meanwhile (the stop cancels workers); should it fail (the ledger is away, the
        process is killed), those rows go out once their lease ends, counted as possible
        duplicates: more than happened, never less."""
        cancelled = False

        async def through(future: asyncio.Future[Any]) -> Any:
            nonlocal cancelled
            while True:
                try:
                    return await asyncio.shield(future)
                except asyncio.CancelledError:
                    if future.cancelled():
                        raise
                    cancelled = True  # raised again once the rows are given back

        try:
            rows = list(unsent) + (await through(claiming) if claiming is not None else [])
            if rows:
                keys = [r["key"] for r in rows]
                release = self.ledger.in_thread(self.ledger.release, keys)
                await through(asyncio.ensure_future(release))
        except Exception as exc:
            log.warning("claimed deliveries not given back", extra={"error": str(exc)})
        if cancelled:
            raise asyncio.CancelledError

    def _pacer(self, name: str, rate: float | None, batch_size: int) -> Pacer | SharedPacer:
        """Workers on a PostgreSQL ledger pace each notifier together, through the ledger; a
        SQLite ledger (one host, usually one worker) paces in the process."""
        if rate is None or math.isinf(rate) or not self.ledger.is_postgres:
            return Pacer(rate)

        async def reserve(seconds: float) -> tuple[float, float]:
            return await self.ledger.in_thread(self.ledger.reserve_pace, name, seconds)

        return SharedPacer(rate, batch_size, reserve)

    def _blocked_batch(self, name: str, batch: Sequence[dict[str, Any]]) -> bool:
        """Every row of ``batch`` is for a mode this notifier is blocked in."""
        if not self.blocked:
            return False
        try:
            modes = {self.campaign_for(row["incident_id"]).incident.mode for row in batch}
        except BreachError:
            return False
        return all((name, mode) in self.blocked for mode in modes)

    def _finished(
        self, answered: Callable[[], None], unsettled: asyncio.Semaphore
    ) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            answered()  # a batch that failed before its provider answered
            unsettled.release()
            if not self._inflight:
                self.drained.notify()
            if not task.cancelled() and task.exception() is not None:
                log.error("dispatch batch failed", extra={"error": repr(task.exception())})

        return done

    async def _send(
        self,
        notifier: Notifier,
        rows: Sequence[dict[str, Any]],
        breaker: CircuitBreaker,
        answered: Callable[[], None],
    ) -> None:
        """Send one batch and settle its receipts; ``answered`` frees its slot once the
        provider has answered (or the batch fails before a request)."""
        messages: dict[str, tuple[Mode, Message]] = {}
        receipts: list[Receipt] = []
        campaigns: dict[str, Campaign] = {}  # a batch is mostly one incident's
        given_up: list[dict[str, Any]] = []
        for row in rows:
            if row["reclaims"] >= self._lost_sends:
                given_up.append(self._given_up(row))
                continue
            try:
                campaign = campaigns.get(row["incident_id"])
                if campaign is None:
                    campaign = campaigns[row["incident_id"]] = self.campaign_for(row["incident_id"])
                messages[row["key"]] = (campaign.incident.mode, campaign.message_for(row))
            except (BreachError, TemplateError, KeyError, ValueError) as exc:
                receipts.append(Receipt(row["key"], Outcome.PERMANENT,
                                        error=f"cannot rebuild the message: {exc}"))  # fmt: skip
        by_mode: dict[Mode, list[Message]] = {}
        for mode, message in messages.values():
            by_mode.setdefault(mode, []).append(message)
        whole_batch_failed = bool(messages)
        blocked: list[Receipt] = []
        for mode, batch in by_mode.items():
            error = self.blocked.get((notifier.name, mode))
            if error is None:
                try:
                    got = await self._call(notifier, batch, mode)
                except ConfigurationError as exc:
                    error = self._block(notifier.name, mode, str(exc))
                else:
                    if any(r.outcome is not Outcome.TRANSIENT for r in got):
                        whole_batch_failed = False
                    receipts += got
                    continue
            # neither a provider failure (the breaker stays out of it) nor worth a retry
            whole_batch_failed = False
            blocked += [Receipt(m.delivery_id, Outcome.PERMANENT,
                                error=f"configuration: {error}") for m in batch]  # fmt: skip
        answered()
        if whole_batch_failed:
            was = breaker.state
            breaker.record_failure()
            if breaker.state != was and breaker.state.value == "open":
                log.warning(
                    "circuit opened: provider failing, pausing sends",
                    extra={"notifier": notifier.name, **breaker.snapshot()},
                )
                await self.ledger.in_thread(self._record_circuit, notifier.name, rows, breaker)
        elif messages and not blocked:
            was = breaker.state
            breaker.record_success()
            if was is CircuitState.HALF_OPEN and breaker.state is CircuitState.CLOSED:
                await self.ledger.in_thread(self._record_circuit, notifier.name, rows, breaker)
        settled = self._settlements(rows, receipts + blocked) + given_up
        await self._settler.settle(settled)
        if self.observer is not None:
            tally = Counter("blocked" if (s.get("reason") or "").startswith("configuration: ")
                            else "retried" if s["state"] == DeliveryState.PENDING.value
                            else s["state"] for s in settled)  # fmt: skip
            for state, count in tally.items():
                self.observer.settled(notifier.name, state, count)
        if blocked and self.on_blocked is not None:
            keys = {r.delivery_id for r in blocked}
            failed = [row for row in rows if row["key"] in keys]
            for mode in {messages[k][0] for k in keys}:
                error = self.blocked[(notifier.name, mode)]
                await self.ledger.in_thread(self.on_blocked, notifier.name, mode, failed, error)

    def _given_up(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The settlement of a row claimed again after too many lost sends (see
        :data:`MIN_LOST_SENDS`)."""
        self.counts["dead"] += 1
        error = (f"not sent again: {row['reclaims']} sends were never recorded (each lease ran "
                 "out, or no answer came); the provider may have had them")  # fmt: skip
        return {"key": row["key"], "state": DeliveryState.DEAD.value, "error": error,
                "reason": error, "uncertain": False}  # fmt: skip

    def _block(self, name: str, mode: Mode, error: str) -> str:
        if (name, mode) not in self.blocked:
            log.error("notifier not configured: its deliveries fail without retry",
                      extra={"notifier": name, "mode": mode, "error": error})  # fmt: skip
        self.blocked[(name, mode)] = error
        return error

    def _record_circuit(
        self, name: str, rows: Sequence[dict[str, Any]], breaker: CircuitBreaker
    ) -> None:
        """A breaker opened or closed: said on the timeline of each incident in the batch."""
        snap = breaker.snapshot()
        detail: dict[str, Any] = {"notifier": name, "state": snap["state"],
                                  "trips": snap["trips"]}  # fmt: skip
        if snap["retry_in"] is not None:
            probe: datetime = now() + timedelta(seconds=snap["retry_in"])
            detail.update(next_probe_at=probe.isoformat(), cooldown_seconds=snap["cooldown"])
        kind = "circuit.opened" if snap["state"] == CircuitState.OPEN.value else "circuit.closed"
        for incident_id in sorted({row["incident_id"] for row in rows}):
            event = IncidentEvent(incident_id, kind, None, dict(detail))
            try:
                self.ledger.record(event)
            except BreachError as exc:  # a note on the timeline must not stop deliveries
                log.error("circuit event not recorded", extra={"error": str(exc)})
                continue
            self.host.emit(event)

    async def _call(self, notifier: Notifier, batch: list[Message], mode: Mode) -> list[Receipt]:
        """The notifier's receipts, one per message whatever happens inside the plugin; a
        :class:`ConfigurationError` is raised on to the caller."""
        started = time.monotonic()
        try:
            # a deadline on this task, not a second task per batch as ``wait_for`` makes
            async with asyncio.timeout(self.settings.send_timeout):
                got = list(await notifier.send(batch, mode))
        except ConfigurationError:
            raise  # not the provider's fault, and no retry will fix it: the caller blocks
        except TimeoutError:
            # the request may have gone out and been accepted: whatever happens next, count it
            error = f"no answer within {self.settings.send_timeout:g}s"
            return [Receipt(m.delivery_id, Outcome.TRANSIENT, error=error, uncertain=True)
                    for m in batch]  # fmt: skip
        except Exception as exc:  # a plugin bug must not lose the batch: retry it, loudly
            log.error(
                "notifier failed",
                extra={"notifier": notifier.name, "error": f"{type(exc).__name__}: {exc}"},
            )
            error = f"{notifier.name} raised {type(exc).__name__}: {exc}"
            return [Receipt(m.delivery_id, Outcome.TRANSIENT, error=error) for m in batch]
        finally:
            if self.observer is not None:
                self.observer.answered(notifier.name, time.monotonic() - started)
        answered = {r.delivery_id for r in got}
        missing = [m for m in batch if m.delivery_id not in answered]
        return got + [
            Receipt(m.delivery_id, Outcome.TRANSIENT, error=f"{notifier.name} gave no receipt")
            for m in missing
        ]

    def _settlements(
        self, rows: Sequence[dict[str, Any]], receipts: Sequence[Receipt]
    ) -> list[dict[str, Any]]:
        attempts = {row["key"]: row["attempts"] for row in rows}
        policy = self.settings.policy
        current = now()
        # the states' values once per batch, not an enum lookup per receipt
        sent, failed = DeliveryState.SENT.value, DeliveryState.FAILED.value
        dead, retried = DeliveryState.DEAD.value, DeliveryState.PENDING.value
        out = []
        counts = self.counts
        for receipt in receipts:
            tried = attempts.get(receipt.delivery_id)
            if tried is None:
                continue  # a receipt for a message that was not in this batch
            outcome = receipt.outcome
            if outcome is Outcome.SENT:
                out.append({"key": receipt.delivery_id, "error": receipt.error,
                            "uncertain": receipt.uncertain, "state": sent,
                            "provider_message_id": receipt.provider_id,
                            "sent_at": current})  # fmt: skip
                counts["sent"] += 1
                continue
            settled: dict[str, Any] = {"key": receipt.delivery_id, "error": receipt.error,
                                       "uncertain": receipt.uncertain}  # fmt: skip
            if outcome is Outcome.PERMANENT:
                counts["failed"] += 1
                settled.update(state=failed, reason=receipt.error or "rejected by the provider")
            elif policy.exhausted(tried):
                counts["dead"] += 1
                why = receipt.error or "transient failure"
                settled.update(state=dead, reason=f"gave up after {tried} attempts: {why}")
            else:
                counts["retried"] += 1
                delay = policy.delay(tried, receipt.retry_after, self.rng)
                settled.update(state=retried, next_attempt_at=current + timedelta(seconds=delay))
            out.append(settled)
        return out


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, done on the first call only (a slot freed twice would admit one more)."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return call


class Settler:
    """Writes the settlements of batches that finish together in one ledger transaction.

    Sixty-four one-message SMS batches in flight would otherwise be sixty-four transactions
    queueing for the database's write lock (SQLite serialises writers, each waiter sleeping in
    its busy handler). While one write runs, the batches that finish meanwhile wait for the
    next, which takes them all: one statement per transaction instead of one per batch, and no
    timer, so a lone batch is written at once. Each caller returns once its own rows are written
    (or with the error that stopped them), exactly as if it had written them itself.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._waiting: list[tuple[Sequence[dict[str, Any]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def settle(self, outcomes: Sequence[dict[str, Any]]) -> None:
        """Record ``outcomes`` (see :meth:`Ledger.settle`); return when they are written."""
        if not outcomes:
            return
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((outcomes, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await written

    async def _write(self) -> None:
        # one turn of the loop first: the batches that finished in this turn join the write
        await asyncio.sleep(0)
        while self._waiting:
            taken, self._waiting = self._waiting, []
            error = await self._settle([row for outcomes, _ in taken for row in outcomes], taken)
            if error is None or len(taken) == 1 or isinstance(error, LedgerUnavailable):
                for _, written in taken:  # each caller raises the error as its own
                    _resolve(written, error)
                continue
            # One batch's bad row must not fail the others written with it: each is written
            # alone, and only what fails alone fails.
            for number, (outcomes, written) in enumerate(taken):
                _resolve(written, await self._settle(outcomes, taken[number:]))

    async def _settle(
        self,
        rows: Sequence[dict[str, Any]],
        callers: Sequence[tuple[Sequence[dict[str, Any]], asyncio.Future[None]]],
    ) -> Exception | None:
        """Write ``rows``: the error that stopped them, or None. Cancelled meanwhile, the
        ``callers`` still waiting are cancelled too."""
        try:
            await self.ledger.in_thread(self.ledger.settle, rows)
        except Exception as exc:
            return exc
        except BaseException:
            for _, written in callers:
                written.cancel()
            raise
        return None


def _resolve(written: asyncio.Future[None], error: Exception | None) -> None:
    """Tell a caller of :meth:`Settler.settle` how its write went."""
    if written.done():
        return
    if error is None:
        written.set_result(None)
    else:
        written.set_exception(error)
