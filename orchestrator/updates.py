"""Updates of an incident: corrected or completed facts, and the follow-up notices they owe.

``breach update INCIDENT --fact K=V --reason TEXT`` records new facts as update 1, 2, ... of the
incident (``incident.updated`` on the timeline: every changed fact with its old and new value,
the reason, who). Each update fans out the playbook's ``on_update`` steps as follow-up
instances, ``STEP@N`` in the ledger, with delivery keys of their own
(``INCIDENT:STEP@N:RECIPIENT``), so two updates never collide and a retried or resumed fan-out
stays idempotent.

Who gets a follow-up: the people who **received** an earlier notice of the incident, meaning one
of their deliveries on a step that is not itself a follow-up (its fallback included) settled
``sent`` or ``delivered`` before the update was recorded. "Sent" counts: the provider accepted
the message, and many channels never confirm delivery; a receipt that later reports a bounce
turns the delivery ``failed``. Notices already owed are never withdrawn: a delivery still
pending or retrying when the update is recorded goes out as it was going to, and since a message
is rendered when it is sent, it carries the facts as they stand then (the corrected ones), so
that person gets no follow-up for this update. People who were never reached (no contact, a
refused address) get none either: there is nothing to correct. A message being handed to a
provider when the update is recorded (``sending``) was rendered with the earlier facts: its
person is noted on the follow-up steps, which fall due no earlier than the end of its lease, and
is counted in if it went. A message claimed in the seconds just after the update, while the
engine still holds the earlier facts (it re-reads them every few seconds), may carry them too:
that person gets no follow-up for this update, since the ledger does not keep when a delivery
was claimed.

The follow-up notice is the locale's ``follow_up`` text (see :class:`~.playbook.FollowUpText`)
over the first notice, rendered with ``update`` in its templates: ``number``, ``reason``, ``at``,
``first_notice_at`` (when the incident's first notice went out) and ``changes``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import facts as facts_mod
from .errors import BreachError, FactError, StateConflict
from .events import IncidentEvent
from .ledger import FALLBACK_SUFFIX, Step, StepState, now
from .playbook import UPDATE_MARK, NoticeText, Playbook

if TYPE_CHECKING:
    from .campaign import Campaign
    from .fanout import FanOut
    from .session import Breach

#: the audit event an update writes
UPDATED_KIND = "incident.updated"
#: incident states an update is refused in: nothing more is sent for them
CLOSED_STATES = ("cancelled", "closed")
#: channel texts of a follow-up that does not write its own: they lead with what changed
FOLLOW_UP_DEFAULTS = {
    "sms": "{{ organisation.name }}: {{ notice.what_happened }} {{ notice.contact }}",
    "push": "{{ notice.what_happened }}",
    "call": "{{ notice.greeting or '' }} {{ notice.what_happened }} {{ notice.impact }} "
    "{{ notice.measures }} {{ notice.advice }}"
    "{% if notice.remedies %} {{ notice.remedies }}{% endif %} {{ notice.contact }}",
}
#: follow-up fields that fall back to the first notice's text
INHERITED = ("impact", "measures", "advice", "contact", "data_involved", "remedies", "subject",
             "greeting")  # fmt: skip


def instance_id(step_id: str, number: int) -> str:
    """The ledger id of an ``on_update`` step fanned out for update ``number``."""
    return f"{step_id}{UPDATE_MARK}{number}"


def update_number(step_id: str) -> int | None:
    """The update a ledger step id (or its fallback's) belongs to; None for other steps."""
    _base, mark, number = step_id.removesuffix(FALLBACK_SUFFIX).partition(UPDATE_MARK)
    return int(number) if mark and number.isdigit() else None


def follow_up_playbook(playbook: Playbook) -> Playbook:
    """The playbook as its follow-up steps render it: each locale's notice is its
    ``follow_up`` text over the first notice (locales without one keep the first notice)."""
    merged: dict[str, NoticeText] = {}
    for locale, text in playbook.notice.items():
        follow = text.follow_up
        if follow is None:
            merged[locale] = text
            continue
        fields: dict[str, Any] = {name: getattr(follow, name) or getattr(text, name)
                                  for name in INHERITED}  # fmt: skip
        fields["what_happened"] = follow.what_happened
        for name, default in FOLLOW_UP_DEFAULTS.items():
            fields[name] = getattr(follow, name) or default
        merged[locale] = NoticeText(**fields)
    return playbook.model_copy(update={"notice": merged})


def template_update(detail: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """What follow-up templates read as ``update``, from an ``incident.updated`` event. A list
    value reads as its items joined with commas; a fact that had none reads as ``None``."""
    first = detail.get("first_notice_at")
    return {
        "number": detail["number"],
        "reason": detail.get("reason") or "",
        "at": at,
        "first_notice_at": datetime.fromisoformat(first) if first else at,
        "changes": [
            {**c, "old": _shown(c.get("old")), "new": _shown(c.get("new"))}
            for c in detail.get("changes", ())
        ],
    }


def _shown(value: Any) -> Any:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else value


def sample_update(playbook: Playbook) -> dict[str, Any]:
    """An ``update`` for rendering follow-up templates at validation time."""
    samples = facts_mod.samples(playbook.facts)
    name = next(iter(playbook.facts), "sample_fact")
    spec = playbook.facts.get(name)
    new = _shown(facts_mod.jsonable(samples).get(name, "sample value"))
    return {
        "number": 1, "reason": "sample reason for the update",
        "at": datetime(2026, 1, 3, 9, 0, tzinfo=UTC),
        "first_notice_at": datetime(2026, 1, 1, 9, 30, tzinfo=UTC),
        "changes": [{"fact": name, "description": spec.description if spec else "",
                     "old": new, "new": new}],
    }  # fmt: skip


# -- recording an update ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One fact an update changes."""

    fact: str
    description: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {"fact": self.fact, "description": self.description, "old": self.old,
                "new": self.new}  # fmt: skip


def changes_of(
    playbook: Playbook, current: Mapping[str, Any], given: Mapping[str, Any]
) -> list[Change]:
    """The declared facts ``given`` changes, typed and checked; raises :class:`FactError` for a
    fact the playbook does not declare or a value of the wrong type."""
    facts_mod.check_values(given)
    unknown = [name for name in given if name not in playbook.facts]
    if unknown:
        name = unknown[0]
        hint = difflib.get_close_matches(name, list(playbook.facts), n=1, cutoff=0.6)
        tail = (f"did you mean {hint[0]!r}?" if hint
                else f"it declares: {', '.join(playbook.facts) or 'none'}")  # fmt: skip
        raise FactError(f"unknown fact {name!r}: playbook {playbook.id!r} does not declare it; "
                        f"{tail}")  # fmt: skip
    out = []
    for name, value in given.items():
        spec = playbook.facts[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise FactError(f"fact {name!r}: give a value (an update corrects facts, it does "
                            "not erase them)")  # fmt: skip
        typed = facts_mod.jsonable({name: facts_mod.coerce(name, value, spec.type)})[name]
        old = current.get(name)
        if typed != old:
            out.append(Change(name, spec.description, old, typed))
    return out


def record_update(
    breach: Breach,
    incident_id: str,
    facts: Mapping[str, Any],
    *,
    reason: str | None = None,
    by: str = "orchestrator",
    via: str = "cli",
) -> dict[str, Any]:
    """Record update N of an incident and schedule its follow-up steps (see
    :meth:`Breach.update`). Everything is checked before anything is written."""
    ledger = breach.ledger
    incident = ledger.incident(incident_id)
    if incident.state in CLOSED_STATES:
        raise StateConflict(f"incident {incident_id} is {incident.state}: it sends nothing more, "
                            "so it cannot be updated")  # fmt: skip
    if not facts:
        raise BreachError("give the facts that changed: --fact NAME=VALUE")
    if not by.strip():
        raise BreachError("say who records the update: --by NAME")
    playbook = breach.recorded_playbook(incident)
    changes = changes_of(playbook, incident.facts, facts)
    if not changes:
        given = ", ".join(f"{k}={v}" for k, v in facts.items())
        raise BreachError(f"nothing to update: incident {incident_id} already has {given}")
    merged = {**incident.facts, **{c.fact: c.new for c in changes}}
    breach.check_facts(playbook, merged)
    events = ledger.events(incident_id)
    number = 1 + sum(1 for e in events if e.kind == UPDATED_KIND)
    moment = now()
    notified, first_at = ledger.notified(incident_id, before=moment, mark=UPDATE_MARK)
    # Messages being sent right now were rendered with the old facts: the follow-ups wait for
    # them to settle, and count those people in if they are then sent.
    sending, settled_by = ledger.in_flight(incident_id, mark=UPDATE_MARK)
    position = 1 + max((s.position for s in ledger.steps(incident_id)), default=0)
    steps = [
        Step(incident_id=incident_id, step_id=instance_id(spec.id, number),
             position=position + i, channel=spec.channel,
             due_at=max(_due(spec.at, moment), settled_by or moment),
             state=StepState.SCHEDULED.value,
             detail={"update": number, "in_flight": sorted(sending)})
        for i, spec in enumerate(sorted(playbook.update_steps, key=lambda s: _due(s.at, moment)))
    ]  # fmt: skip
    detail = {
        "number": number, "changes": [c.as_dict() for c in changes], "reason": reason,
        "via": via, "facts_version": incident.facts_version + 1,
        "notified_before": moment.isoformat(), "notified": notified, "in_flight": len(sending),
        "first_notice_at": first_at.isoformat() if first_at else None,
        "follow_ups": [s.step_id for s in steps],
    }  # fmt: skip
    event = IncidentEvent(incident_id, UPDATED_KIND, None, detail, actor=by, at=moment)
    reopen = bool(steps) and incident.mode != "dry-run"
    ledger.add_update(incident_id, expected_version=incident.facts_version, facts=merged,
                      steps=steps, event=event, reopen=reopen)  # fmt: skip
    breach.host.emit(event)
    result: dict[str, Any] = {
        "incident": incident_id, "number": number, "by": by, "reason": reason,
        "changes": detail["changes"], "notified": notified,
        "first_notice_at": detail["first_notice_at"],
        "follow_ups": [{"step": s.step_id, "channel": s.channel,
                        "due_at": s.due_at.isoformat() if s.due_at else None} for s in steps],
    }  # fmt: skip
    return result


def _due(at: Any, moment: datetime) -> datetime:
    """An ``on_update`` step's due time: its offset counts from the update."""
    return moment + at if isinstance(at, timedelta) else moment


# -- carrying follow-ups out ----------------------------------------------------------------------


class FollowUps:
    """A campaign's follow-up side: per update, its fan-out (the follow-up notice, with
    ``update`` in the template context) and the people it goes to. Read from the timeline on
    first use; a campaign is reloaded when its facts change, and every update changes them."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self._updates: dict[int, tuple[Mapping[str, Any], datetime]] | None = None
        self._fanouts: dict[int, FanOut] = {}
        self._playbook: Playbook | None = None

    def update(self, number: int) -> tuple[Mapping[str, Any], datetime]:
        """The ``incident.updated`` event of update ``number``: its detail and time."""
        if self._updates is None or number not in self._updates:
            events = self.campaign.ledger.events(self.campaign.incident.incident_id)
            self._updates = {int(e.detail["number"]): (e.detail, e.at)
                             for e in events if e.kind == UPDATED_KIND}  # fmt: skip
        if number not in self._updates:
            raise BreachError(f"incident {self.campaign.incident.incident_id} has no update "
                              f"{number}")  # fmt: skip
        return self._updates[number]

    def fanout(self, number: int) -> FanOut:
        """The fan-out that renders update ``number``'s follow-up notice."""
        found = self._fanouts.get(number)
        if found is not None:
            return found
        from .fanout import FanOut
        from .notice import NoticeRenderer

        if self._playbook is None:
            self._playbook = follow_up_playbook(self.campaign.playbook)
        base = self.campaign.fanout
        found = FanOut(
            host=base.host, ledger=base.ledger, playbook=self._playbook,
            renderer=NoticeRenderer(self._playbook), incident=base.incident,
            incident_vars=base.incident_vars, outbox=base.outbox, redirect=base.redirect,
        )  # fmt: skip
        detail, at = self.update(number)
        found.shared_context = {**found.shared_context, "update": template_update(detail, at)}
        self._fanouts[number] = found
        return found

    def audience(self, step_id: str) -> set[str]:
        """The recipient ids a follow-up step goes to: those who had received an earlier notice
        when its update was recorded, and those whose notice was being sent then and went."""
        number = update_number(step_id)
        assert number is not None
        detail, at = self.update(number)
        ledger, incident_id = self.campaign.ledger, self.campaign.incident.incident_id
        before = datetime.fromisoformat(detail.get("notified_before") or at.isoformat())
        people = ledger.notified_ids(incident_id, before=before, mark=UPDATE_MARK)
        sending = set(ledger.step(incident_id, step_id).detail.get("in_flight") or ())
        if sending - people:
            went = ledger.notified_ids(incident_id, before=now(), mark=UPDATE_MARK)
            people |= sending & went
        return people


def timeline_updates(events: Sequence[Any]) -> list[dict[str, Any]]:
    """The updates of an incident, oldest first, for ``breach status``."""
    return [
        {"number": e.detail.get("number"), "at": e.at.isoformat(), "by": e.actor,
         "reason": e.detail.get("reason"), "changes": e.detail.get("changes", []),
         "notified": e.detail.get("notified"), "first_notice_at": e.detail.get("first_notice_at"),
         "follow_ups": e.detail.get("follow_ups", [])}
        for e in events if e.kind == UPDATED_KIND
    ]  # fmt: skip
