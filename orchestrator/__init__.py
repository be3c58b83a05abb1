"""breach-orchestrator: breach-notification playbooks, notifier plugins and a durable ledger."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("breach")

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
