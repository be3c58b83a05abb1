"""A step's fan-out: stream the audience, decide each person's channel, render, record.

Every audience row ends in exactly one delivery row for the step: on the step's channel, on its
fallback channel, or ``skipped`` with the reason. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import TemplateError

from . import conditions, sharing
from .audience import AudienceSource, Recipient
from .collector import tune_collector
from .ledger import DUPLICATE_REASON, DeliveryState, Ledger
from .message import IncidentContext, Message, RenderedNotice
from .notice import NoticeRenderer, template_context
from .notifier import Notifier
from .outbox import Outbox
from .playbook import Playbook, Step
from .pluginhost import PluginHost

PUBLIC = "public"
#: deliveries recorded per transaction: large enough for throughput, small enough for memory
BATCH = 5000


@dataclass(slots=True)
class Planned:
    """One delivery row, and the outbox output to write once the ledger has recorded it."""

    row: dict[str, Any]
    output: Callable[[], None] | None = None
    #: the key of the step and the address the row would send to, when its step dedupes (see
    #: sharing.py)
    address_key: bytes | None = None


@dataclass
class StepTally:
    """What one step's fan-out produced."""

    step_id: str
    channel: str
    people: int = 0
    states: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    fallback: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "channel": self.channel,
            "people": self.people,
            "states": dict(self.states),
            "channels": dict(self.channels),
            "fallback": self.fallback,
            "skipped_reasons": dict(self.reasons.most_common()),
        }


def delivery_key(incident_id: str, step_id: str, recipient_id: str) -> str:
    key = f"{incident_id}:{step_id}:{recipient_id}"
    if len(key) <= 200:
        return key
    return f"{incident_id}:{step_id}:#" + hashlib.sha256(recipient_id.encode()).hexdigest()


#: the canonical JSON of hashed payloads (one encoder: ``json.dumps`` with options builds one
#: per call, which a fan-out would pay for every person)
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def content_hash(payload: Any) -> str:
    blob = _CANONICAL.encode(payload)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def delivery_hash(shared_digest: str, personal: Any) -> str:
    """A delivery's content hash: its notice's shared body (by digest) and its personal part.

    Equal payloads give equal hashes, and a change to either part changes it, without building
    the whole provider payload for every person.
    """
    blob = _CANONICAL.encode(personal)
    return hashlib.sha256(f"{shared_digest}\0{blob}".encode()).hexdigest()


def recipient_view(r: Recipient) -> dict[str, Any]:
    """What templates and recipient rules may read of a person (no contact values)."""
    return {
        "id": r.id,
        "name": r.name or "",
        "locale": r.locale,
        "region": r.region,
        "attrs": r.attrs,
        "has_phone": r.address("phone")[0] is not None,
        "has_email": r.address("email")[0] is not None,
        "has_push_token": r.address("push_token")[0] is not None,
    }


class FanOut:
    """Turns one step into delivery rows (and, in dry-run, outbox records)."""

    def __init__(
        self,
        *,
        host: PluginHost,
        ledger: Ledger,
        playbook: Playbook,
        renderer: NoticeRenderer,
        incident: IncidentContext,
        incident_vars: dict[str, Any],
        outbox: Outbox | None,
        redirect: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.host = host
        self.redirect = redirect
        self.ledger = ledger
        self.playbook = playbook
        self.renderer = renderer
        self.incident = incident
        self.incident_vars = incident_vars
        self.outbox = outbox
        self.dry_run = incident.mode == "dry-run"
        self.shared_context = template_context(
            playbook=playbook, incident=incident_vars, facts=incident.facts
        )
        #: (notifier, step, notice) -> digest of the notifier's shared payload for that notice;
        #: only notices rendered once are kept (a personal notice is one person's alone)
        self._shared_digests: dict[tuple[str, str, int], tuple[RenderedNotice, str]] = {}
        #: whether some locale's templates read the person (else none needs the person's view)
        self._personal_any = any(renderer.is_personal(loc) for loc in playbook.notice)
        #: when the rows of the batch being planned were created: one moment per batch (each row
        #: its own would be converted for the ledger once per row)
        self._stamp = datetime.now(UTC)

    def run(
        self,
        step: Step,
        audience: AudienceSource,
        *,
        resume_after: int = 0,
        only: set[str] | None = None,
    ) -> StepTally:
        """Fan ``step`` out over the audience; rows up to ``resume_after`` are already recorded.

        ``only`` restricts it to these recipient ids (a fallback for people the first channel
        did not reach).
        """
        notifier = self.host.notifier(step.channel, step.notifier)
        tally = StepTally(step.id, step.channel)
        planned = (
            self._incident_rows(step, notifier, tally)
            if notifier.contact is None
            else self._recipient_rows(step, notifier, audience, tally, resume_after, only)
        )
        batch: list[Planned] = []
        last_row = resume_after
        self._stamp = datetime.now(UTC)
        release = tune_collector()
        try:
            for item in planned:
                batch.append(item)
                if len(batch) >= BATCH:
                    last_row = self._record(step, batch, tally, last_row, final=False)
                    batch = []
                    self._stamp = datetime.now(UTC)
            self._record(step, batch, tally, last_row, final=True)
        finally:
            release()
        return tally

    def _record(
        self, step: Step, batch: list[Planned], tally: StepTally, last_row: int, *, final: bool
    ) -> int:
        """Ledger first, outbox second: the outbox never shows what the ledger refused."""
        last_row = max([last_row, *(p.row["recipient_row"] for p in batch)])
        self._share(batch, tally)
        progress = (self.incident.incident_id, step.id, last_row, final)
        rows = [p.row for p in batch]
        duplicates = set(self.ledger.insert_deliveries(rows, progress=progress))
        for position, item in enumerate(batch):
            if position in duplicates:
                tally.states[item.row["state"]] -= 1
                tally.states[DeliveryState.SKIPPED.value] += 1
                tally.reasons[DUPLICATE_REASON] += 1
                if item.row.get("shares_with") is not None:  # recorded as a duplicate id instead
                    tally.reasons[sharing.SAME_ADDRESS] -= 1
                if item.row.get("contact") is not None:
                    tally.channels[item.row["channel"]] -= 1
                    tally.fallback -= int(item.row.get("via_fallback", False))
            elif item.output is not None:
                item.output()
        return last_row

    def _share(self, batch: list[Planned], tally: StepTally) -> None:
        """One message per address: later sharers of an address become skipped rows."""
        keys = [p.address_key for p in batch]
        if not any(keys):
            return
        states = [p.row["state"] for p in batch]
        sharers = sharing.share(
            [p.row for p in batch], keys, self.ledger.address_holders, DeliveryState.SKIPPED.value
        )
        for position in sharers:
            item = batch[position]
            tally.states[states[position]] -= 1
            tally.states[DeliveryState.SKIPPED.value] += 1
            tally.reasons[sharing.SAME_ADDRESS] += 1
            tally.channels[item.row["channel"]] -= 1
            tally.fallback -= int(item.row.get("via_fallback", False))
            item.output = None

    # -- one message per step (public notice, regulator report) ---------------------------------

    def _incident_rows(self, step: Step, notifier: Notifier, tally: StepTally) -> Iterator[Planned]:
        notices = {
            loc: self.renderer.render_public(loc, self.shared_context)
            for loc in self.playbook.notice
        }
        target = f"regulator:{step.regulator}" if step.regulator else PUBLIC
        key = delivery_key(self.incident.incident_id, step.id, target)
        message = Message(
            delivery_id=key, step_id=step.id, channel=step.channel, incident=self.incident,
            notice=notices[self.playbook.default_locale], notices=notices,
            regulator=step.regulator,
        )  # fmt: skip
        yield self._finish(step, notifier, message, target, 0, None, tally, via_fallback=False)

    # -- one message per person -----------------------------------------------------------------

    def _recipient_rows(
        self,
        step: Step,
        notifier: Notifier,
        audience: AudienceSource,
        tally: StepTally,
        resume_after: int,
        only: set[str] | None = None,
    ) -> Iterator[Planned]:
        fallback = None
        if step.fallback is not None and "unreachable" in step.fallback.on:
            fallback = self.host.notifier(step.fallback.channel, step.fallback.notifier)
        rule = conditions.parse(step.recipients) if step.recipients else None
        facts = self.incident.facts
        for person in audience:
            if only is not None and person.id not in only:
                continue
            tally.people += 1
            if person.row <= resume_after:
                continue  # recorded before a restart
            # what templates and rules read of the person: built only when one of them reads it
            view = recipient_view(person) if rule is not None or self._personal_any else None
            if rule is not None and not rule(
                {"recipient": view, "facts": facts, "severity": self.playbook.severity}
            ):
                yield self._skip(step, person, "excluded by the step's recipients rule", tally)
                continue
            chosen, via_fallback = notifier, False
            assert notifier.contact is not None
            address, why = person.address(notifier.contact)
            if address is None and fallback is not None and fallback.contact is not None:
                address, why_fb = person.address(fallback.contact)
                if address is not None:
                    chosen, via_fallback = fallback, True
                else:
                    why = f"{why}; fallback {fallback.channel}: {why_fb}"
            own_address = address  # dedupe on the person's own, even when redirected
            if address is not None and self.redirect is not None:
                address, why = self._redirected(chosen, person.id)
            if address is None:
                yield self._skip(step, person, why or "unreachable", tally)
                continue
            locale = self.renderer.locale_for(person.locale)
            personal = view if self.renderer.is_personal(locale) else None
            try:
                notice = self._render(locale, personal)
            except TemplateError as exc:
                yield self._skip(step, person, f"template error: {exc}", tally)
                continue
            message = Message(
                delivery_id=delivery_key(self.incident.incident_id, step.id, person.id),
                step_id=step.id, channel=chosen.channel, incident=self.incident, notice=notice,
                recipient=person, address=address,
            )  # fmt: skip
            planned = self._finish(step, chosen, message, person.id, person.row, personal, tally,
                                   via_fallback=via_fallback)  # fmt: skip
            if step.dedupe == "address" and planned.row["state"] != DeliveryState.SKIPPED.value:
                assert chosen.contact is not None and own_address is not None
                planned.address_key = sharing.address_key(
                    self.incident.incident_id, step.id, chosen.contact, own_address
                )
            yield planned

    def _redirected(self, notifier: Notifier, recipient_id: str) -> tuple[str | None, str | None]:
        """Staging: the same person always gets the same test address of the right kind."""
        assert self.redirect is not None and notifier.contact is not None
        choices = self.redirect.get(notifier.contact) or []
        if not choices:
            return None, f"--redirect-to has no test {notifier.contact.replace('_', ' ')}"
        digest = hashlib.sha256(recipient_id.encode()).digest()
        return choices[int.from_bytes(digest[:4], "big") % len(choices)], None

    def _render(self, locale: str, view: dict[str, Any] | None) -> RenderedNotice:
        """``view``: the person as personal templates read them; None renders the shared
        notice (the locale's templates do not read the person)."""
        if view is None:
            return self.renderer.render(locale, self.shared_context)
        context = {**self.shared_context, "recipient": view}
        return self.renderer.render(locale, context)

    def _skip(self, step: Step, person: Recipient, reason: str, tally: StepTally) -> Planned:
        tally.states[DeliveryState.SKIPPED.value] += 1
        tally.reasons[reason] += 1
        stamp = self._stamp
        return Planned({
            "key": delivery_key(self.incident.incident_id, step.id, person.id),
            "incident_id": self.incident.incident_id, "step_id": step.id,
            "recipient_id": person.id, "recipient_row": person.row, "channel": step.channel,
            "state": DeliveryState.SKIPPED.value, "reason": reason,
            "created_at": stamp, "updated_at": stamp,
        })  # fmt: skip

    def _finish(
        self,
        step: Step,
        notifier: Notifier,
        message: Message,
        recipient_id: str,
        row: int,
        personal: dict[str, Any] | None,
        tally: StepTally,
        *,
        via_fallback: bool,
    ) -> Planned:
        stamp = self._stamp
        record = {
            "key": message.delivery_id, "incident_id": self.incident.incident_id,
            "step_id": step.id, "recipient_id": recipient_id, "recipient_row": row,
            "channel": notifier.channel, "notifier": notifier.name, "via_fallback": via_fallback,
            "locale": message.notice.locale, "contact": message.address,
            "recipient_data": _snapshot(personal), "created_at": stamp, "updated_at": stamp,
        }  # fmt: skip
        veto = self.host.veto(message) if self.host.has_vetoes else None
        if veto is not None:
            tally.states[DeliveryState.SKIPPED.value] += 1
            tally.reasons[f"vetoed: {veto}"] += 1
            record.update(state=DeliveryState.SKIPPED.value, reason=f"vetoed: {veto}")
            return Planned(record)
        digest = delivery_hash(self._shared_digest(notifier, message, personal is None),
                               notifier.personal_payload(message))  # fmt: skip
        if via_fallback:
            tally.fallback += 1
        tally.channels[notifier.channel] += 1
        output = None
        if self.dry_run:
            state = DeliveryState.SENT.value
            output = self._outbox_writer(
                step,
                notifier,
                message,
                recipient_id,
                notifier.build_payload(message),  # the outbox shows each exact payload
                shared=personal is None,
                via_fallback=via_fallback,
            )
        else:
            state = DeliveryState.PENDING.value
        tally.states[state] += 1
        record.update(state=state, content_hash=digest,
                      next_attempt_at=None if self.dry_run else stamp)  # fmt: skip
        return Planned(record, output)

    def _shared_digest(self, notifier: Notifier, message: Message, shared: bool) -> str:
        """The digest of ``notifier``'s shared payload for this message's notice.

        A notice rendered once per locale is one object for everyone: its shared payload is
        built and hashed on first use only. A personal notice is built per person, uncached.
        """
        if not shared:
            return content_hash(notifier.shared_payload(message))
        key = (notifier.name, message.step_id, id(message.notice))
        known = self._shared_digests.get(key)
        # the notice itself is kept with its digest, so its id cannot be reused by another
        if known is None or known[0] is not message.notice:
            known = (message.notice, content_hash(notifier.shared_payload(message)))
            self._shared_digests[key] = known
        return known[1]

    def _outbox_writer(
        self,
        step: Step,
        notifier: Notifier,
        message: Message,
        recipient_id: str,
        payload: dict[str, Any],
        *,
        shared: bool,
        via_fallback: bool,
    ) -> Callable[[], None]:
        outbox = self.outbox
        assert outbox is not None
        locale = message.notice.locale
        notice_id = f"{step.id}:{locale}" if shared else message.delivery_id

        def write() -> None:
            outbox.notice(notice_id, message.notice, shared=shared)
            outbox.write(notifier.channel, {
                "delivery": message.delivery_id, "step": step.id, "recipient": recipient_id,
                "locale": locale, "fallback": via_fallback, "notice": notice_id,
                "payload": payload,
            })  # fmt: skip
            if outbox.wants_preview(step.id, notifier.channel, locale):
                outbox.preview(step.id, notifier.channel, locale, notifier.preview_html(message))

        return write


def _snapshot(view: dict[str, Any] | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {k: view[k] for k in ("name", "locale", "region", "attrs")}
