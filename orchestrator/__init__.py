"""breach-orchestrator: breach-notification playbooks, notifier plugins and a durable ledger.

Plugins import what they need from :mod:`orchestrator.plugin`. Modules of this package import
from the module that defines a name, never from this one.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .version import __version__

__all__ = ["__version__", "hookimpl"]
