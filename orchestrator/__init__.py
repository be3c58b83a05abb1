"""breach-orchestrator: breach-notification playbooks, notifier plugins and a durable ledger.

:class:`Breach` (from :mod:`orchestrator.session`) is the Python API. Plugins import what they
need from :mod:`orchestrator.plugin`. Modules of this package import from the module that
defines a name, never from this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl
from .version import __version__

if TYPE_CHECKING:
    from .session import Breach

__all__ = ["Breach", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # The session brings in SQLAlchemy, Alembic and the plugin host: loaded when asked for,
    # so a plugin that imports `orchestrator.plugin` does not pay for it.
    if name == "Breach":
        from .session import Breach

        return Breach
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
