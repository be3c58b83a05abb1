"""Run the simulator: in a background thread for tests and benchmarks, or as a server.

with Simulator() as sim:
    sim.configure("twilio", error_rate=0.1, seed=7)
    ...  # point a client at sim.url
    assert len(sim.accepted("twilio")) == 10
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .app import create_app
from .config import ProviderConfig, SimulatorConfig
from .keys import DISPATCHER_KEY
from .state import AcceptedMessage, CallbackRecord, RecordedRequest, SimState, SinkRecord

__all__ = ["Simulator", "serve"]

T = TypeVar("T")

#: How long a stopping server waits for open requests (held ones are released at once).
_SHUTDOWN_TIMEOUT = 2.0


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return runner, _url(host, bound_port)


async def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    config: SimulatorConfig | None = None,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the simulator until cancelled; ``ready`` is called with its base URL once bound."""
    runner, url = await _start(create_app(config), host, port)
    try:
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()  # forever: the caller cancels (Ctrl-C, task.cancel())
    finally:
        await runner.cleanup()


class Simulator:
    """The simulator on its own event loop in a background thread; every method is thread-safe.

    ``port=0`` picks a free port; :attr:`url` tells which. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self._state = SimState(self.config)
        self._app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind and serve in a background thread; returns once requests can be made."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        app = self._app = create_app(self.config, state=self._state)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, url = loop.run_until_complete(_start(app, self.host, self.port))
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(url)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="breach-simulator", daemon=True)
        self._thread.start()
        try:
            self._url = started.result(timeout=30)
        except BaseException:
            self._thread.join()
            self._thread = self._loop = None
            raise
        return self

    def stop(self) -> None:
        """Stop serving: pending receipts are cancelled, held requests released."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = self._loop = self._runner = self._app = None
        self._url = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("simulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("simulator is not running")
        return self._url

    def sink_url(self, name: str) -> str:
        """A URL on the simulator that records whatever is posted to it (a callback receiver)."""
        return f"{self.url}/_sim/sink/{name}"

    # -- configuration -------------------------------------------------------------------------

    @property
    def state(self) -> SimState:
        """The recorded state (thread-safe)."""
        return self._state

    def configure(self, provider: str, **settings: Any) -> ProviderConfig:
        """Change faults or receipts of one provider (keys of :class:`ProviderConfig`)."""
        return self.state.configure(provider, **settings)

    def reset(self) -> None:
        """Forget everything received, cancel pending receipts, restore starting settings."""
        if self._app is None or self._loop is None:
            self._state.reset()
            return
        self._call(self._reset(self._app), timeout=30)

    async def _reset(self, app: web.Application) -> None:
        await app[DISPATCHER_KEY].cancel_all()
        self._state.reset()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every receipt started so far has been posted."""
        if self._app is not None:
            self._call(self._app[DISPATCHER_KEY].drain(), timeout)

    # -- reading -------------------------------------------------------------------------------

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Every recorded request, optionally of one provider."""
        return self.state.requests(provider)

    def accepted(self, provider: str | None = None) -> list[AcceptedMessage]:
        """Messages the providers accepted, optionally of one provider."""
        return self.state.accepted(provider)

    def per_second(self, provider: str | None = None) -> dict[int, int]:
        """Accepted messages per wall-clock second (see :meth:`SimState.per_second`)."""
        return self.state.per_second(provider)

    def busiest_window(self, provider: str | None = None, seconds: float = 1.0) -> int:
        """The most messages accepted in any sliding window of ``seconds``."""
        return self.state.busiest_window(provider, seconds)

    def callbacks(self, provider: str | None = None) -> list[CallbackRecord]:
        """Receipts the simulator posted, optionally of one provider."""
        return self.state.callbacks(provider)

    def sink(self, name: str | None = None) -> list[SinkRecord]:
        """Requests received on :meth:`sink_url` endpoints."""
        return self.state.sink(name)

    def stats(self) -> dict[str, Any]:
        """Counts per provider and outcome (the same as ``GET /_sim/stats``)."""
        return self.state.stats()

    def revoke_access_tokens(self) -> int:
        """Make every access token ``POST /token`` granted invalid (an expiry before its time,
        a rotated key); the configured FCM token stays valid. Returns how many there were."""
        return self.state.revoke_access_tokens()

    @property
    def token_grants(self) -> int:
        """Access tokens ``POST /token`` granted since the last reset."""
        return self.state.grants
