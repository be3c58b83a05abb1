"""Grafana alerting's webhook payload (contact point type "webhook", payload version "1").

Grafana sends Alertmanager's notification shape (``receiver``, ``status``, ``alerts`` with
``labels``, ``annotations``, ``startsAt``, ``fingerprint``, ``groupKey``...) with its own version
number and a few fields of its own (``orgId``, ``title``, ``state``, ``message``, per-alert
``values`` and panel URLs), which routing does not read. So a Grafana notification is parsed into
the same :class:`~orchestrator.server.alertmanager.Notification` and routed, deduplicated (by
group key and fingerprint) and joined exactly like an Alertmanager one; its incidents carry a
``grafana:`` dedupe key of their own, so the two systems' groups never collide.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from . import alertmanager as am

__all__ = ["dedupe_key", "parse"]

#: the payload version Grafana's webhook contact point sends
VERSION = "1"


def parse(document: Any) -> am.Notification:
    """The notification in ``document`` (parsed JSON); ValueError lists what is wrong."""
    if not isinstance(document, dict):
        raise ValueError(f"payload: should be a JSON object, not a {type(document).__name__}")
    if document.get("version") != VERSION:
        raise ValueError(f"version: should be {VERSION!r} (Grafana's webhook payload)")
    try:
        # the Alertmanager model checks its own version field; Grafana's was checked above
        return am.Notification.model_validate({**document, "version": "4"})
    except ValidationError as exc:
        raise ValueError(am.shape_errors(exc)) from None


def dedupe_key(group_key: str) -> str:
    """The ledger's dedupe key for a Grafana alert group."""
    return "grafana:" + hashlib.sha256(group_key.encode("utf-8")).hexdigest()
