"""Where the simulator's application keeps its state: the keys the routes read it by.

A module of their own, so that the application and the route modules (control, page) both import
them and neither imports the other back.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .callbacks import CallbackDispatcher
from .state import SimState

__all__ = ["CLOSING_KEY", "DISPATCHER_KEY", "STATE_KEY"]

STATE_KEY = web.AppKey("simulator_state", SimState)
DISPATCHER_KEY = web.AppKey("simulator_dispatcher", CallbackDispatcher)
#: Set when the server shuts down, so requests held by a ``timeout`` fault let go at once.
CLOSING_KEY = web.AppKey("simulator_closing", asyncio.Event)
