"""A provider simulator: real HTTP on 127.0.0.1 standing in for Twilio, SendGrid and FCM.

Tests, benchmarks and ``breach demo`` point the real provider SDKs (or the engine's stand-in
notifier) at it. It injects faults reproducibly, records every request and every accepted message,
and posts receipts the way the providers do. It imports no provider SDK.
"""

from __future__ import annotations

from .app import create_app
from .callbacks import twilio_signature
from .config import PROVIDERS, ProviderConfig, SimulatorConfig
from .harness import Simulator, serve
from .state import AcceptedMessage, CallbackRecord, RecordedRequest, SimState, SinkRecord

__all__ = [
    "PROVIDERS",
    "AcceptedMessage",
    "CallbackRecord",
    "ProviderConfig",
    "RecordedRequest",
    "SimState",
    "Simulator",
    "SimulatorConfig",
    "SinkRecord",
    "create_app",
    "serve",
    "twilio_signature",
]
