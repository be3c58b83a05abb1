"""The regulator report's file name. The report is built by the core for the regulator's
regime (its items, in the regulator's voice).

What a report states and its JSON Schema belong to the core (``orchestrator.plugin.reports``);
this plugin renders it (``render.py``) and files it (``notifier.py``).
"""

from __future__ import annotations

import re

from orchestrator.plugin import Message

__all__ = ["filing_name"]


def filing_name(message: Message) -> str:
    """``<incident>-<regulator>-<step>``, made safe as a file name (no path separators)."""
    parts = (message.incident.incident_id, message.regulator or "regulator", message.step_id)
    safe = "-".join(re.sub(r"[^A-Za-z0-9._]+", "-", p).strip("-.") for p in parts)
    return safe.lstrip(".") or "report"
