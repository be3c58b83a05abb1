"""Everything a breach plugin imports from the core: the plugin author's reference.

A plugin imports from here (``orchestrator.plugin``) and from the helper modules below it
(``orchestrator.plugin.textblocks`` ...), and from nowhere else in ``orchestrator``: what is
listed here is the contract, the rest of the core may change under it. The built-in plugins
(``breach_twilio``, ``breach_sendgrid``, ``breach_fcm``, ``breach_announcement``,
``breach_regulator``) keep to the same rule, and a test checks that they do.

Hooks
    Mark each implementation with :data:`hookimpl`; the specifications are in
    :mod:`orchestrator.hookspecs`. ``register_notifiers(register)`` registers :class:`Notifier`
    subclasses; ``register_audience_sources(register)`` registers ``register("scheme",
    factory)``, an :class:`AudienceSourceFactory` that yields :class:`Recipient` objects;
    ``register_receipts(register)`` registers ``register("name", handler)``, a
    :data:`ReceiptHandler`; ``incident_event(event)`` observes each :class:`IncidentEvent`;
    ``before_send(message)`` vetoes one :class:`Message` by returning a reason.

Notifiers
    A :class:`Notifier` serves one channel. It declares its configuration in ``settings_spec``
    (:class:`Setting` objects) and receives it resolved (:func:`resolve_settings`: the
    environment, or a file named by ``NAME_FILE``) as ``self.settings``;
    :meth:`Notifier.require_settings` and :meth:`Notifier.seconds_setting` read it. It is handed
    :class:`Message` objects (a :class:`RenderedNotice` in the recipient's locale, the
    :class:`IncidentContext`), returns the provider payload from ``build_payload`` and, when
    live, one :class:`Receipt` per message from ``send``, each with an :class:`Outcome`: sent,
    transient (the core retries) or permanent. Its ``contact`` is a :data:`Contact` field of the
    recipient; ``send`` is told the :data:`Mode` (live, sandbox or dry-run).

Receipts
    A receipt handler gets a :class:`ReceiptRequest`: the URL the provider called, its headers,
    body and parsed form, and ``settings``, the resolved settings of the notifiers its plugin
    registers (the same values those notifiers get; a handler reads them, never the
    environment). It checks the provider's signature, raises :class:`ReceiptRejected` when the
    request is not genuine, and returns :class:`ReceiptUpdate` objects. Each carries a
    :class:`ReceiptOutcome` (delivered, bounce, undelivered, failed): the ledger stores it and
    playbook fallbacks ``on: [bounce]`` and ``on: [undelivered]`` select on it; ``reason`` is
    text for people, never parsed.

Errors
    Raise :class:`ConfigurationError` for a missing or invalid setting and :class:`BreachError`
    for any other failure a commander can act on; the message says what to do next.

Helpers
    :func:`count_segments` (:class:`SegmentCount`) counts SMS segments exactly;
    :func:`language` and :func:`direction` read a locale tag. Modules below this package:

    - :mod:`orchestrator.plugin.headings`: the notice's title and section headings per language;
    - :mod:`orchestrator.plugin.reports`: the report a regulator's regime asks for, built from
      a regulator message, with its missing items and JSON Schema errors;
    - :mod:`orchestrator.plugin.textblocks`: notice text cleaned for HTML and XML, paragraphs and
      links, the breach's dates, the plugin's own autoescaped templates;
    - :mod:`orchestrator.plugin.reasons`: ``mask_reason``, provider error text masked and cut
      short for a receipt;
    - :mod:`orchestrator.plugin.files`: atomic writes, a folder lock, and receipts for a
      notifier that delivers by writing files.
"""

from __future__ import annotations

from ..audience import AudienceSourceFactory, Recipient
from ..errors import BreachError, ConfigurationError
from ..events import IncidentEvent
from ..hookspecs import hookimpl
from ..locales import direction, language
from ..message import IncidentContext, Message, RenderedNotice
from ..notifier import Contact, Mode, Notifier, Outcome, Receipt, Setting, resolve_settings
from ..receipts import (
    ReceiptHandler,
    ReceiptOutcome,
    ReceiptRejected,
    ReceiptRequest,
    ReceiptUpdate,
)
from ..segments import SegmentCount, count_segments

__all__ = [
    "AudienceSourceFactory",
    "BreachError",
    "ConfigurationError",
    "Contact",
    "IncidentContext",
    "IncidentEvent",
    "Message",
    "Mode",
    "Notifier",
    "Outcome",
    "Receipt",
    "ReceiptHandler",
    "ReceiptOutcome",
    "ReceiptRejected",
    "ReceiptRequest",
    "ReceiptUpdate",
    "Recipient",
    "RenderedNotice",
    "SegmentCount",
    "Setting",
    "count_segments",
    "direction",
    "hookimpl",
    "language",
    "resolve_settings",
]
