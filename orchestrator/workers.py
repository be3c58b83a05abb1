"""One worker among several on a shared ledger: its identity, heartbeat and wake-ups.

A worker is one ``breach run`` or ``breach serve`` process. It registers in the ledger under an
id made of its host, process id and a random tag, beats a heartbeat every fifth of the worker
timeout, and says when it stops cleanly. The fan-outs it holds stay its own while the heartbeat
is fresh; afterwards another worker takes them over (:mod:`orchestrator.ledger.leases`).

On PostgreSQL the worker also listens on the ``breach_work`` channel: new deliveries, a new
incident or an approval wake its idle loops at once. Polling stays as it was, so a lost
connection or a missed notification only costs latency; SQLite only polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING

from .errors import BreachError
from .ledger.leases import NOTIFY_CHANNEL

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["DEFAULT_WORKER_TIMEOUT", "Presence", "Wakeup", "new_worker_id", "sleep_unless"]

log = logging.getLogger(__name__)

#: seconds without a heartbeat after which a worker is taken for dead
DEFAULT_WORKER_TIMEOUT = 30.0
#: a dead worker's row is deleted by the next worker to start after this long
FORGET_AFTER_SECONDS = 7 * 24 * 3600.0
#: the listener's wait before reconnecting after its connection failed
RECONNECT_SECONDS = 5.0


def new_worker_id() -> str:
    """``host:pid:tag``, unique even when a process id is reused."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Wakeup:
    """Sleeps that end early when new work is announced; every sleeper wakes at once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every current sleeper."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep ``seconds``, or until ``stop`` is set or work is announced."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._event.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()


class Presence:
    """This process as a worker of ``ledger``: registered, heart beating, listening."""

    def __init__(self, ledger: Ledger, *, kind: str, timeout: float = DEFAULT_WORKER_TIMEOUT):
        self.ledger = ledger
        self.kind = kind
        self.timeout = timeout
        self.id = new_worker_id()
        self.wakeup = Wakeup()
        #: set while the PostgreSQL listener is connected and listening
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def interval(self) -> float:
        """Seconds between heartbeats: five beats fit in the timeout."""
        return max(0.1, self.timeout / 5)

    async def start(self, stop: asyncio.Event) -> None:
        """Register, then beat and listen in the background until ``stop``."""
        host, pid = socket.gethostname(), os.getpid()
        await self.ledger.in_thread(self.ledger.register_worker, self.id, host=host, pid=pid,
                                    kind=self.kind, timeout=self.timeout)  # fmt: skip
        # Rows of workers long dead only fill the table; status shows the live ones.
        await self.ledger.in_thread(self.ledger.forget_workers, FORGET_AFTER_SECONDS)
        await self.ledger.in_thread(self._bury_local, host)
        self._tasks = [asyncio.create_task(self._beat(stop))]
        if self.ledger.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(stop)))
        log.info("worker registered", extra={"worker": self.id, "kind": self.kind})

    def _bury_local(self, host: str) -> None:
        """Workers of this host whose process is gone died without saying so (a restart after a
        kill): mark them stopped, so their fan-outs resume now rather than after their timeout.
        Were one alive after all (a host name shared across process namespaces), the lease
        fence keeps its batches from being written twice; it would only lose its fan-out."""
        for worker in self.ledger.live_workers():
            mine = worker["host"] == host[:255] and worker["id"] != self.id
            if mine and not _process_exists(int(worker["pid"])):
                self.ledger.stop_worker(str(worker["id"]))

    async def stop(self) -> None:
        """Stop beating and listening; say so in the ledger (what it held is free at once)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(BreachError):
            await self.ledger.in_thread(self.ledger.stop_worker, self.id)

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.ledger.in_thread(self.ledger.heartbeat, self.id, self.timeout)
            except BreachError as exc:  # the ledger is away: the next beat tries again
                log.error("heartbeat failed", extra={"worker": self.id, "error": str(exc)})
            await sleep_unless(stop, self.interval)

    async def _listen(self, stop: asyncio.Event) -> None:
        import psycopg  # the PostgreSQL driver: only needed with a PostgreSQL ledger

        dsn = self.ledger.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    self.wakeup.notify()  # anything announced while we were away
                    async for _ in conn.notifies():
                        self.wakeup.notify()
            except (psycopg.Error, OSError) as exc:
                log.warning("listening for new work failed; polling meanwhile",
                            extra={"worker": self.id, "error": str(exc)})  # fmt: skip
            finally:
                self.listening.clear()
            await sleep_unless(stop, RECONNECT_SECONDS)
