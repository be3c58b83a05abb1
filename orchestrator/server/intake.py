"""From an accepted payload to an incident: route, dedupe, create or join, record.

Deciding (:meth:`Intake.decide_alertmanager`, :meth:`Intake.decide_generic`) only reads the
ledger, so ``breach routes test`` shows exactly what the server would do; carrying out
(:meth:`Intake.carry_out`) writes. Both run under a lock per dedupe key, so two notifications of
the same group arriving together open one incident, not two (the lock is per process).

Timeline events written here: ``alert.received`` (the alerts that opened the incident),
``alert.joined`` (a new alert of the group, with the facts it changed), ``alert.repeated``
(alerts already known, re-sent), ``alert.updated`` (a generic payload changing facts),
``alert.resolved`` and ``alert.refired``. A resolution is recorded, never a cancellation:
notices already owed are still sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ..errors import BreachError, FactError
from ..facts import jsonable
from ..session import Breach
from . import alertmanager as am
from . import grafana
from .config import Route, ServerConfig
from .routing import MISSING, first_failure, lookup, mapped_facts, resolve_facts, select
from .routing import awareness as awareness_of

Action = Literal["create", "join", "no-route", "ignore"]
#: the hooks whose payloads are Alertmanager-shaped notifications
AlertHook = Literal["alertmanager", "grafana"]
_STRIPES = 64


class LiveUnavailable(BreachError):
    """A live route fired but no delivery engine runs in this server (HTTP 503)."""


class PayloadInvalid(BreachError):
    """The payload lacks what its route needs (HTTP 400)."""


@dataclass
class Decision:
    """What a payload leads to; ``breach routes test`` prints it, the server carries it out."""

    hook: str
    action: Action
    reason: str = ""
    route: Route | None = None
    mode: str | None = None
    dedupe_key: str | None = None
    incident: str | None = None
    #: a new incident's facts (resolved, typed), or the facts a join changes
    facts: dict[str, Any] = field(default_factory=dict)
    aware_at: datetime | None = None
    #: why each route did not match (no-route), in config order
    tried: list[str] = field(default_factory=list)
    #: alert.received detail of a new incident
    received: dict[str, Any] = field(default_factory=dict)
    joined: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    refired: list[str] = field(default_factory=list)
    updated: bool = False
    #: fingerprint -> why a joining alert's facts were not taken
    fact_errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-able account of the decision (response bodies, ``routes test --json``)."""
        out: dict[str, Any] = {"hook": self.hook, "action": self.action}
        if self.reason:
            out["reason"] = self.reason
        if self.route is not None:
            out["route"] = self.route.name
            out["playbook"] = self.route.playbook.id
            out["audience"] = self.route.audience.name
        if self.mode is not None:
            out["mode"] = self.mode
        if self.incident is not None:
            out["incident"] = self.incident
        if self.dedupe_key is not None:
            out["dedupe_key"] = self.dedupe_key
        if self.action == "create":
            out["facts"] = jsonable(self.facts)
            out["aware_at"] = self.aware_at.isoformat() if self.aware_at else None
        if self.action == "join":
            out["alerts"] = {"new": [fp for fp, _ in self.joined], "repeated": self.repeated,
                             "resolved": self.resolved, "refired": self.refired}  # fmt: skip
            if self.fact_errors:
                out["facts_refused"] = self.fact_errors
            out["facts_changed"] = jsonable(
                {k: v for _, changed in self.joined for k, v in changed.items()} | self.facts
            )
        if self.tried:
            out["tried"] = self.tried
        return out


class Intake:
    """Turns accepted payloads into incidents, per the config's routes."""

    def __init__(
        self,
        config: ServerConfig,
        breach: Breach,
        *,
        live_available: bool = False,
    ) -> None:
        self.config = config
        self.breach = breach
        self.live_available = live_available
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    @contextmanager
    def locked(self, *keys: str) -> Iterator[None]:
        """Serialise decisions on these dedupe keys (striped locks: bounded memory; taken in
        one order, so two callers cannot deadlock)."""
        stripes = sorted({zlib.crc32(k.encode("utf-8")) % _STRIPES for k in keys})
        with ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._locks[stripe])
            yield

    # -- Alertmanager ------------------------------------------------------------------------

    def alertmanager(
        self, notification: am.Notification, *, hook: AlertHook = "alertmanager"
    ) -> Decision:
        """Decide and carry out one Alertmanager (or Grafana: ``hook``) notification."""
        with self.locked(_group_key(hook, notification)):
            decision = self.decide_alertmanager(notification, hook=hook)
            self.carry_out(decision)
        return decision

    def decide_alertmanager(
        self,
        notification: am.Notification,
        *,
        received: datetime | None = None,
        hook: AlertHook = "alertmanager",
    ) -> Decision:
        """What this notification would do: create, join, or nothing (and why). Grafana's
        notifications (``hook="grafana"``) take the same path through the grafana routes."""
        moment = received or datetime.now(UTC)
        key = _group_key(hook, notification)
        open_id = self._open(key)
        if open_id is not None:
            return self._join_alertmanager(open_id, key, notification, hook)
        firing = [a for a in notification.alerts if a.status == "firing"]
        if not firing:
            return Decision(
                hook,
                "ignore",
                dedupe_key=key,
                reason="only resolved alerts, and no open incident for this group",
            )
        views = [am.alert_view(notification, a) for a in firing]
        selection, tried = select(self.config.routes_for(hook), views)
        if selection is None:
            return Decision(hook, "no-route", dedupe_key=key, tried=tried,
                            reason="no route matched this notification")  # fmt: skip
        route, view = selection.route, views[selection.view]
        facts = resolve_facts(route, mapped_facts(route, view))
        received_detail: dict[str, Any] = {
            "hook": hook, "route": route.name, "group_key": notification.groupKey,
            "receiver": notification.receiver, "fingerprints": [a.fingerprint for a in firing],
            "lead": firing[selection.view].fingerprint,
        }  # fmt: skip
        if notification.truncatedAlerts:
            received_detail["truncated_alerts"] = notification.truncatedAlerts
        return Decision(
            hook, "create", route=route, mode=self.config.mode_for(route),
            dedupe_key=key, facts=facts, aware_at=awareness_of(route, view, moment),
            received=received_detail,
        )  # fmt: skip

    def _join_alertmanager(
        self, incident_id: str, key: str, notification: am.Notification, hook: AlertHook
    ) -> Decision:
        events = self.breach.timeline(incident_id)
        states = _alert_states(events)
        route = self._route_of(events)
        current: dict[str, Any] | None = None
        decision = Decision(hook, "join", route=route, dedupe_key=key,
                            incident=incident_id)  # fmt: skip
        repeated = []
        for alert in notification.alerts:
            known = states.get(alert.fingerprint)
            if alert.status == "resolved":
                if known != "resolved":
                    decision.resolved.append(alert.fingerprint)
                    states[alert.fingerprint] = "resolved"
                continue
            if known is None:
                changed: dict[str, Any] = {}
                if route is not None:
                    if current is None:
                        current = self._facts(incident_id)
                    try:
                        facts = mapped_facts(route, am.alert_view(notification, alert))
                    except FactError as exc:
                        # the group's incident still learns of the alert; refusing the whole
                        # notification would lose its repeats and resolution too
                        decision.fact_errors[alert.fingerprint] = str(exc)
                        facts = {}
                    changed = _changed(facts, current)
                    current.update(jsonable(changed))
                decision.joined.append((alert.fingerprint, changed))
                states[alert.fingerprint] = "firing"
            elif known == "resolved":
                decision.refired.append(alert.fingerprint)
                states[alert.fingerprint] = "firing"
            else:
                repeated.append(alert.fingerprint)
        decision.repeated = repeated
        return decision

    # -- generic JSON --------------------------------------------------------------------------

    def generic(self, document: Mapping[str, Any]) -> Decision:
        """Decide and carry out one generic webhook payload."""
        # every key this payload could concern, whichever route ends up taking it
        keys = [generic_dedupe_key(r, document) for r in self.config.routes_for("generic")]
        with self.locked(*(k for k in keys if k is not None)):
            decision = self.decide_generic(document)
            self.carry_out(decision)
        return decision

    def decide_generic(
        self, document: Mapping[str, Any], *, received: datetime | None = None
    ) -> Decision:
        """What this payload would do. A resolution is looked for first, route by route, so it
        finds its incident even when it no longer matches the route's rules."""
        moment = received or datetime.now(UTC)
        routes = self.config.routes_for("generic")
        for route in routes:
            if route.resolved and first_failure(route.resolved, document) is None:
                key = generic_dedupe_key(route, document)
                open_id = self._open(key) if key else None
                if open_id is not None:
                    return Decision(
                        "generic",
                        "join",
                        route=route,
                        dedupe_key=key,
                        incident=open_id,
                        resolved=[_ref(route, document)],
                    )
        selection, tried = select(routes, [document])
        if selection is None:
            return Decision("generic", "no-route", tried=tried,
                            reason="no route matched this payload")  # fmt: skip
        route = selection.route
        key = generic_dedupe_key(route, document)
        if key is None:
            raise PayloadInvalid(f"the payload has no {route.dedupe!r} field, which route "
                             f"{route.name!r} dedupes on")  # fmt: skip
        if route.resolved and first_failure(route.resolved, document) is None:
            return Decision("generic", "ignore", route=route, dedupe_key=key,
                            reason="a resolution, and no open incident for it")  # fmt: skip
        facts = mapped_facts(route, document)
        open_id = self._open(key)
        if open_id is not None:
            changed = _changed(facts, self._facts(open_id))
            return Decision("generic", "join", route=route, dedupe_key=key, incident=open_id,
                            facts=changed, updated=bool(changed),
                            repeated=[] if changed else [_ref(route, document)])  # fmt: skip
        return Decision(
            "generic", "create", route=route, mode=self.config.mode_for(route), dedupe_key=key,
            facts=resolve_facts(route, facts), aware_at=awareness_of(route, document, moment),
            received={"hook": "generic", "route": route.name, "ref": _ref(route, document)},
        )  # fmt: skip

    # -- carrying out -------------------------------------------------------------------------

    def carry_out(self, decision: Decision) -> None:
        """Write what ``decision`` says: a new incident, or events on the open one's timeline."""
        if decision.action == "create":
            assert decision.route is not None
            decision.incident = self.start_incident(decision)
        elif decision.action == "join":
            assert decision.incident is not None
            self._record_join(decision.incident, decision)

    def start_incident(self, decision: Decision) -> str:
        """Open the incident a route asks for. The one place the server triggers playbooks."""
        route = decision.route
        assert route is not None
        live = decision.mode == "live"
        if live and not self.live_available:
            raise LiveUnavailable(
                f"route {route.name!r} is live but the live delivery engine is not running in "
                "this server; nothing was created (Alertmanager will retry). Run a dry-run route "
                'or set force_mode = "dry-run" until live delivery is available'
            )
        audience = route.audience
        options = dict(audience.options)
        if audience.bind:
            params = dict(options.get("params", {}))
            for param, fact in audience.bind.items():
                params[param] = decision.facts.get(fact)
            options["params"] = params
        result = self.breach.trigger(
            route.playbook, audience=audience.spec, audience_options=options,
            facts=decision.facts, aware_at=decision.aware_at, mode="live" if live else "dry-run",
            outbox=None if live else self._outbox(route), source=decision.hook,
            dedupe_key=decision.dedupe_key, events=[("alert.received", decision.received)],
            actor="webhook",
        )  # fmt: skip
        return result.incident_id

    def _outbox(self, route: Route) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.config.outbox / f"{route.name}-{stamp}"

    def _record_join(self, incident_id: str, d: Decision) -> None:
        # Alertmanager alerts are named by fingerprint, generic payloads by their dedupe ref
        name = "fingerprint" if d.hook in ("alertmanager", "grafana") else "ref"
        for ref, changed in d.joined:
            detail = {name: ref}
            if ref in d.fact_errors:
                detail["facts_refused"] = d.fact_errors[ref]
            self._record(incident_id, "alert.joined", detail, changed)
        if d.updated:
            self._record(incident_id, "alert.updated", {"hook": d.hook}, d.facts)
        if d.repeated:
            self._record(incident_id, "alert.repeated", {name + "s": d.repeated})
        for ref in d.refired:
            self._record(incident_id, "alert.refired", {name: ref})
        for ref in d.resolved:
            self._record(incident_id, "alert.resolved", {name: ref})

    def _record(
        self,
        incident_id: str,
        kind: str,
        detail: Mapping[str, Any],
        facts: Mapping[str, Any] | None = None,
    ) -> None:
        self.breach.record(incident_id, kind, detail=detail, facts=facts or None,
                           actor="webhook")  # fmt: skip

    # -- ledger reads ---------------------------------------------------------------------------

    def _open(self, key: str) -> str | None:
        return self.breach.find_open_incident(key)

    def _facts(self, incident_id: str) -> dict[str, Any]:
        return self.breach.facts(incident_id)

    def _route_of(self, events: Sequence[Mapping[str, Any]]) -> Route | None:
        """The route that opened an incident (from its alert.received event), if still there."""
        for event in events:
            if event["kind"] == "alert.received":
                name = event["detail"].get("route")
                for route in self.config.routes:
                    if route.name == name:
                        return route
        return None


def _group_key(hook: AlertHook, notification: am.Notification) -> str:
    """The dedupe key of a notification's group, in its alerting system's own namespace."""
    if hook == "grafana":
        return grafana.dedupe_key(notification.groupKey)
    return am.dedupe_key(notification.groupKey)


def generic_dedupe_key(route: Route, document: Mapping[str, Any]) -> str | None:
    """``generic:<route>:<digest>`` of the route's dedupe field (None when it is absent), or of
    the whole document when the route names no field."""
    if route.dedupe is not None:
        value = lookup(document, route.dedupe)
        if value is MISSING or value is None or value == "":
            return None
    else:
        value = document
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return f"generic:{route.name}:{digest}"


def _ref(route: Route, document: Mapping[str, Any]) -> str:
    """How timeline events name a generic payload: its dedupe field's value, or a digest."""
    if route.dedupe is not None:
        value = lookup(document, route.dedupe)
        if value is not MISSING and value is not None:
            return str(value)[:200]
    blob = json.dumps(document, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


def _alert_states(events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """fingerprint -> "firing" | "resolved", as the timeline last recorded it."""
    states: dict[str, str] = {}
    for event in events:
        detail = event.get("detail") or {}
        kind = event["kind"]
        if kind == "alert.received":
            for fingerprint in detail.get("fingerprints", []):
                states[fingerprint] = "firing"
        elif kind in ("alert.joined", "alert.refired"):
            states[detail.get("fingerprint", "")] = "firing"
        elif kind == "alert.resolved":
            states[detail.get("fingerprint", "")] = "resolved"
    return states


def _changed(facts: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The facts whose value differs from the incident's (compared as stored: JSON)."""
    stored = jsonable(facts)
    return {k: v for k, v in facts.items() if stored[k] != current.get(k)}
