"""Prometheus Alertmanager's webhook payload (version "4") and the views routing reads.

Unknown fields are ignored (Grafana and newer Alertmanagers add some); the fields this server
relies on are required and typed. Label and annotation values are strings, as Alertmanager sends
them: a number there means the payload did not come from an Alertmanager.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

AlertStatus = Literal["firing", "resolved"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Lenient):
    """One alert of a notification."""

    status: AlertStatus
    labels: dict[str, StrictStr]
    annotations: dict[str, StrictStr] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: StrictStr = Field(min_length=1)


class Notification(_Lenient):
    """One webhook call: a group of alerts sharing ``groupKey``."""

    version: Literal["4"]
    receiver: StrictStr
    status: AlertStatus
    alerts: list[Alert] = Field(min_length=1)
    groupLabels: dict[str, StrictStr] = Field(default_factory=dict)
    commonLabels: dict[str, StrictStr] = Field(default_factory=dict)
    commonAnnotations: dict[str, StrictStr] = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: StrictStr = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)


def parse(document: Any) -> Notification:
    """The notification in ``document`` (parsed JSON); ValueError lists what is wrong."""
    try:
        return Notification.model_validate(document)
    except ValidationError as exc:
        raise ValueError(shape_errors(exc)) from None


def shape_errors(exc: ValidationError, limit: int = 5) -> str:
    """``alerts[0].labels.severity: should be a valid string; ...`` without echoing values."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ""
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else ("." if where else "") + str(part)
        message = error["msg"].replace("Input should be", "should be")
        if error["type"] == "missing":
            message = "required field is missing"
        parts.append(f"{where or 'payload'}: {message}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def alert_view(notification: Notification, alert: Alert) -> dict[str, Any]:
    """What routes match and map facts from, for one alert of the notification."""
    return {
        "receiver": notification.receiver,
        "groupKey": notification.groupKey,
        "externalURL": notification.externalURL,
        "groupLabels": notification.groupLabels,
        "commonLabels": notification.commonLabels,
        "commonAnnotations": notification.commonAnnotations,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.startsAt.isoformat(),
        "endsAt": alert.endsAt.isoformat() if alert.endsAt else None,
        "generatorURL": alert.generatorURL,
        "fingerprint": alert.fingerprint,
    }


def dedupe_key(group_key: str) -> str:
    """The ledger's dedupe key for an alert group (a digest: group keys can be long)."""
    return "alertmanager:" + hashlib.sha256(group_key.encode("utf-8")).hexdigest()
