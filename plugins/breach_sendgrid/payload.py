"""Request bodies for SendGrid's ``POST /v3/mail/send``.

How each person's own body travels in a batch
---------------------------------------------
A personalization carries recipients, subject, headers, ``custom_args`` and ``substitutions``
but no content: one request has one content for all its personalizations. The core renders
every notice per recipient, so bodies may differ (a name, an account id, a locale).

* With ``SENDGRID_TEMPLATE_ID`` (a dynamic template), each personalization carries the whole
  document as ``dynamic_template_data`` and SendGrid lays it out with the team's template.
* Without one, messages are grouped by layout (same locale, organisation, incident and set of
  sections). Within a group, a field whose text is the same for everyone is written into the
  shared content once; only fields that differ become substitution tags, and each
  personalization's ``substitutions`` carries its own escaped HTML and plain text for them. Most
  campaigns render identical text for everyone, so most requests carry no substitutions at all.
  SendGrid caps substitutions at 10,000 bytes per personalization (the mail-send reference; the
  substitution-tags page now says 50,000, the smaller bound is the safe one): a message whose
  substitutions do not fit is sent in a request of its own with its full content inline.

Tags embed a hash of all the values they stand for, so no person's text can contain a tag and
trigger a substitution of someone else's text. Requests hold at most 1,000 personalizations and
never the same address twice (SendGrid rejects the whole request otherwise).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from email.utils import parseaddr
from typing import Any

from markupsafe import Markup

from orchestrator.plugin import Message

from .document import EmailDocument, paragraphs, render_html, render_text, template_data

#: SendGrid: at most 1,000 personalizations (and 1,000 recipients) per request.
MAX_PERSONALIZATIONS = 1000
#: SendGrid: substitutions of one personalization may not exceed 10,000 bytes.
SUBSTITUTIONS_MAX_BYTES = 10_000
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class MailConfig:
    """The sender side of every request, from the notifier's settings."""

    sender: str | None  # None: not configured (a dry run shows a placeholder)
    reply_to: str | None = None
    template_id: str | None = None


def address(value: str, default_name: str | None = None) -> dict[str, str]:
    """``"Name <a@b>"`` or ``"a@b"`` as a SendGrid address object."""
    name, email = parseaddr(value)
    out = {"email": email or value}
    display = _display_name(name or default_name or "")
    if display:
        out["name"] = display
    return out


def _display_name(name: str) -> str:
    # SendGrid rejects names containing ";" or "," (400 for the whole request)
    return " ".join(re.sub(r"[;,\r\n]", " ", name).split())


def _header_value(value: str) -> str:
    # header values must be single-line ASCII; ids come from our ledger but never trust them
    return _HEADER_UNSAFE.sub("_", value)[:200]


def _envelope(message: Message, config: MailConfig) -> dict[str, Any]:
    """Everything of a request except personalizations and content."""
    incident = message.incident
    org_name = str(incident.organisation.get("name") or "")
    sender = address(config.sender, org_name) if config.sender else {"email": "<BREACH_EMAIL_FROM>"}
    body: dict[str, Any] = {"from": sender}
    reply_to = config.reply_to or incident.organisation.get("contact_email")
    if reply_to:
        body["reply_to"] = address(str(reply_to), org_name)
    body["categories"] = [
        "breach-notice",
        _header_value(f"incident:{incident.incident_id}"),
        _header_value(f"step:{message.step_id}"),
    ]
    body["headers"] = {
        "X-Breach-Incident": _header_value(incident.incident_id),
        "X-Breach-Step": _header_value(message.step_id),
    }
    body["mail_settings"] = {"sandbox_mode": {"enable": incident.mode == "sandbox"}}
    # Rewritten links in a breach notice look exactly like phishing, and open pixels track people
    # who already had their data exposed: no tracking of any kind.
    body["tracking_settings"] = {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }
    return body


def _envelope_key(message: Message) -> tuple[str, ...]:
    """What must be equal for two messages to share one request envelope."""
    return (message.incident.incident_id, message.incident.mode, message.step_id)


def _personalization(message: Message, subject: str) -> dict[str, Any]:
    if not message.address:
        raise ValueError(f"delivery {message.delivery_id} has no e-mail address to send to")
    to = {"email": message.address}
    name = _display_name(message.recipient.name or "") if message.recipient else ""
    if name:
        to["name"] = name
    return {
        "to": [to],
        "subject": subject,
        "custom_args": {
            "delivery_id": message.delivery_id,
            "incident_id": message.incident.incident_id,
            "step_id": message.step_id,
        },
        # stops mail clients threading every notice of a campaign into one conversation
        "headers": {"X-Entity-Ref-ID": _header_value(message.delivery_id)},
    }


def _content(text: str, html: str) -> list[dict[str, str]]:
    # SendGrid requires text/plain before text/html
    return [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}]


def single_body(message: Message, config: MailConfig, today: date) -> dict[str, Any]:
    """The request for one message, its content inline (or its template data)."""
    doc = EmailDocument.from_message(message, today)
    body = _envelope(message, config)
    p = _personalization(message, doc.subject)
    if config.template_id:
        p["dynamic_template_data"] = template_data(doc)
        body["template_id"] = config.template_id
        body["personalizations"] = [p]
        return body
    body["personalizations"] = [p]
    body["content"] = _content(render_text(doc), render_html(doc))
    return body


def shared_body(message: Message, config: MailConfig, today: date) -> dict[str, Any]:
    """What every recipient of ``message``'s notice shares: :func:`single_body` without the
    person (address, name, delivery id), its subject (and template data) kept."""
    body = single_body(message, config, today)
    (p,) = body.pop("personalizations")
    body["personalization"] = {
        k: v for k, v in p.items() if k in ("subject", "dynamic_template_data")
    }
    return body


def personal_part(message: Message) -> list[str | None]:
    """What :func:`single_body` takes from the person: address, name and delivery id."""
    name = message.recipient.name if message.recipient else None
    return [message.address, name, message.delivery_id]


def _chunks(personalizations: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Requests of at most 1,000 personalizations, never one address twice in a request."""
    chunks: list[tuple[list[dict[str, Any]], set[str]]] = []
    for p in personalizations:
        email = p["to"][0]["email"].lower()
        for items, seen in chunks:
            if len(items) < MAX_PERSONALIZATIONS and email not in seen:
                items.append(p)
                seen.add(email)
                break
        else:
            chunks.append(([p], {email}))
    return [items for items, _ in chunks]


def _size(substitutions: Mapping[str, str]) -> int:
    return len(json.dumps(substitutions, ensure_ascii=False).encode("utf-8"))


def _tags(docs: Sequence[EmailDocument], varying: Sequence[str]) -> dict[str, tuple[str, str]]:
    """field -> (html tag, text tag), unguessable from any one person's text."""
    digest = hashlib.sha256()
    for doc in docs:
        for name in varying:
            digest.update(doc.field(name).encode("utf-8") + b"\0")
    h = digest.hexdigest()[:16]
    return {name: (f"-bo{h}-{name}-html-", f"-bo{h}-{name}-text-") for name in varying}


def _group_bodies(
    group: Sequence[tuple[Message, EmailDocument]], config: MailConfig
) -> tuple[list[dict[str, Any]], list[Message]]:
    """Requests for one layout group, and the messages that must go alone."""
    # a notice rendered once is one document for everyone: compare the distinct ones only
    docs = list({id(doc): doc for _, doc in group}.values())
    first = docs[0]
    fields = ["subject", *(s.key for s in first.sections)]
    varying = [f for f in fields if len({d.field(f) for d in docs}) > 1]
    tags = _tags(docs, varying)
    html = render_html(
        first,
        bodies={f: Markup(tags[f][0]) for f in varying if f != "subject"},
        subject=Markup(tags["subject"][0]) if "subject" in tags else None,
    )
    text = render_text(first, bodies={f: tags[f][1] for f in varying if f != "subject"})
    personalizations: list[dict[str, Any]] = []
    alone: list[Message] = []
    for message, doc in group:
        subs: dict[str, str] = {}
        for f in varying:
            html_tag, text_tag = tags[f]
            if f == "subject":
                subs[html_tag] = str(Markup.escape(doc.subject))
            else:
                subs[html_tag] = str(paragraphs(doc.field(f)))
                subs[text_tag] = doc.field(f)
        if subs and _size(subs) > SUBSTITUTIONS_MAX_BYTES:
            alone.append(message)
            continue
        p = _personalization(message, doc.subject)
        if subs:
            p["substitutions"] = subs
        personalizations.append(p)
    bodies = []
    for chunk in _chunks(personalizations):
        body = _envelope(group[0][0], config)
        body["personalizations"] = chunk
        body["content"] = _content(text, html)
        bodies.append(body)
    return bodies, alone


class _Documents:
    """One :class:`EmailDocument` per notice of a batch: a notice rendered once for many people
    is one object, so its document is built once, not once per person."""

    def __init__(self, today: date) -> None:
        self.today = today
        self._known: dict[tuple[int, int], tuple[Message, EmailDocument]] = {}

    def of(self, message: Message) -> EmailDocument:
        key = (id(message.notice), id(message.incident))
        known = self._known.get(key)
        # the message that made the entry is kept, so neither id can be reused meanwhile
        same = known is not None and known[0].notice is message.notice
        if known is None or not same or known[0].incident is not message.incident:
            known = (message, EmailDocument.from_message(message, self.today))
            self._known[key] = known
        return known[1]


def batch_bodies(
    messages: Sequence[Message], config: MailConfig, today: date
) -> list[dict[str, Any]]:
    """The requests that deliver ``messages``, each person's own text included (see module doc)."""
    if config.template_id:
        by_envelope: dict[tuple[str, ...], list[tuple[Message, dict[str, Any]]]] = {}
        documents = _Documents(today)
        for m in messages:
            doc = documents.of(m)
            p = _personalization(m, doc.subject)
            p["dynamic_template_data"] = template_data(doc)
            by_envelope.setdefault(_envelope_key(m), []).append((m, p))
        out = []
        for items in by_envelope.values():
            for chunk in _chunks(p for _, p in items):
                body = _envelope(items[0][0], config)
                body["template_id"] = config.template_id
                body["personalizations"] = chunk
                out.append(body)
        return out

    groups: dict[tuple[str, ...], list[tuple[Message, EmailDocument]]] = {}
    docs = _Documents(today)
    for m in messages:
        doc = docs.of(m)
        groups.setdefault((*_envelope_key(m), *doc.layout_key()), []).append((m, doc))
    bodies: list[dict[str, Any]] = []
    alone: list[Message] = []
    for group in groups.values():
        group_bodies, group_alone = _group_bodies(group, config)
        bodies += group_bodies
        alone += group_alone
    bodies += [single_body(m, config, today) for m in alone]
    return bodies
