"""Twilio notifiers: SMS through the Messages API, voice calls through the Calls API.

``build_payload`` returns the exact request (method, path, form fields) the Twilio REST API
receives; the auth token never appears in it (it is HTTP Basic auth at send time). Settings that
are not configured show as ``<NAME>`` placeholders so a dry run still shows the request's shape.
"""

from __future__ import annotations

import html
from typing import Any, ClassVar

from orchestrator.message import Message
from orchestrator.notifier import Contact, Notifier, Setting

from .sms import MAX_BODY_CHARS, SmsTooLong, count_segments
from .twiml import TWIML_MAX_CHARS, Twiml, Voice, build_twiml, voice_for

API_VERSION_PATH = "/2010-04-01/Accounts/{sid}"
RECEIPT_PATH = "/receipts/twilio"
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
_RTL = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug"})

_SID = Setting("TWILIO_ACCOUNT_SID", "Twilio account SID (AC...)")
_TOKEN = Setting("TWILIO_AUTH_TOKEN", "Twilio auth token", secret=True)
_RECEIPTS = Setting(
    "BREACH_RECEIPT_BASE_URL",
    "Public base URL of the receipt endpoint; Twilio posts status callbacks to "
    "<base>/receipts/twilio",
    required=False,
)


def _placeholder(name: str) -> str:
    return f"<{name}>"


def _dir(locale: str) -> str:
    return "rtl" if locale.split("-")[0].lower() in _RTL else "ltr"


class _TwilioNotifier(Notifier):
    """What the SMS and call notifiers share: account path, addressing, status callbacks."""

    endpoint: ClassVar[str]

    def _setting(self, name: str) -> str:
        return self.settings.get(name) or _placeholder(name)

    def path(self) -> str:
        """The request path under https://api.twilio.com."""
        sid = self._setting("TWILIO_ACCOUNT_SID")
        return f"{API_VERSION_PATH.format(sid=sid)}/{self.endpoint}"

    def status_callback(self, message: Message) -> str | None:
        """Where Twilio reports delivery status: the core's URL, else the configured base."""
        if message.status_callback:
            return message.status_callback
        base = self.settings.get("BREACH_RECEIPT_BASE_URL")
        return base.rstrip("/") + RECEIPT_PATH if base else None

    @staticmethod
    def _to(message: Message) -> str:
        if not message.address:
            raise ValueError(f"delivery {message.delivery_id} has no phone number to send to")
        return message.address


class TwilioSms(_TwilioNotifier):
    """One SMS per delivery through Twilio Programmable Messaging."""

    name: ClassVar[str] = "twilio-sms"
    channel: ClassVar[str] = "sms"
    contact: ClassVar[Contact | None] = "phone"
    max_batch: ClassVar[int] = 1  # the Messages API takes one message per request
    # Twilio queues per sender (about 1 segment/s on a long code, 100+/s on a short code or a
    # number pool) and drops what waited 10 hours; 10/s suits a Messaging Service or short code
    # without flooding that queue. Raise it per playbook once the sender's throughput is known.
    default_rate: ClassVar[float] = 10.0
    endpoint: ClassVar[str] = "Messages.json"
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        _SID,
        _TOKEN,
        Setting(
            "TWILIO_FROM", "Sender: E.164 number, short code or alphanumeric ID", required=False
        ),
        Setting(
            "TWILIO_MESSAGING_SERVICE_SID",
            "Messaging Service (MG...) that picks the sender; used instead of TWILIO_FROM",
            required=False,
        ),
        _RECEIPTS,
    )

    def missing_settings(self) -> list[str]:
        """Required settings not set, plus the sender when neither form of it is."""
        missing = super().missing_settings()
        if not (
            self.settings.get("TWILIO_FROM") or self.settings.get("TWILIO_MESSAGING_SERVICE_SID")
        ):
            missing.append("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
        return missing

    def build_payload(self, message: Message) -> dict[str, Any]:
        """``{"method", "path", "form"}`` of the Messages request for this delivery."""
        body = message.notice.sms
        if len(body) > MAX_BODY_CHARS:
            raise SmsTooLong(
                f"the SMS for locale {message.notice.locale!r} is {len(body)} characters; "
                f"Twilio accepts {MAX_BODY_CHARS}"
            )
        form: dict[str, Any] = {"To": self._to(message)}
        # A Messaging Service picks the sender from its pool and scales throughput; when one is
        # configured it wins over a single From number.
        if self.settings.get("TWILIO_MESSAGING_SERVICE_SID"):
            form["MessagingServiceSid"] = self.settings["TWILIO_MESSAGING_SERVICE_SID"]
        else:
            form["From"] = self._setting("TWILIO_FROM")
        form["Body"] = body
        callback = self.status_callback(message)
        if callback:
            form["StatusCallback"] = callback
        return {"method": "POST", "path": self.path(), "form": form}

    def preview_html(self, message: Message) -> str:
        """The SMS as a phone bubble, with its encoding and segment count."""
        n = message.notice
        seg = count_segments(n.sms)
        unit = "septets" if seg.encoding == "GSM-7" else "UTF-16 units"
        plural = "" if seg.count == 1 else "s"
        return _page(
            n.locale,
            f"SMS to {message.address or '?'}",
            f'<p class="bubble" lang="{_esc(n.locale)}" dir="{_dir(n.locale)}">{_esc(n.sms)}</p>'
            f'<p class="meta">{seg.count} segment{plural} · {seg.encoding} · '
            f"{seg.units} {unit} · {len(n.sms)} characters</p>",
        )


class TwilioCall(_TwilioNotifier):
    """A voice call reading the notice with text-to-speech, through Twilio Programmable Voice."""

    name: ClassVar[str] = "twilio-call"
    channel: ClassVar[str] = "call"
    contact: ClassVar[Contact | None] = "phone"
    max_batch: ClassVar[int] = 1  # the Calls API places one call per request
    # Twilio accounts start at 1 call per second (CPS) and Twilio queues calls placed faster;
    # a higher CPS is granted per account on request, then raise the playbook's rate to match.
    default_rate: ClassVar[float] = 1.0
    endpoint: ClassVar[str] = "Calls.json"
    settings_spec: ClassVar[tuple[Setting, ...]] = (
        _SID,
        _TOKEN,
        # a Messaging Service cannot place calls: a caller-ID number is required
        Setting("TWILIO_FROM", "Caller ID: an E.164 number on the Twilio account"),
        _RECEIPTS,
    )

    def voice(self, message: Message) -> Voice:
        """The voice for this message: the notice's language, the recipient's accent."""
        recipient_locale = message.recipient.locale if message.recipient else None
        return voice_for(message.notice.locale, recipient_locale)

    def twiml(self, message: Message) -> Twiml:
        """The TwiML read to the person (raises ``TwimlTooLong``)."""
        return build_twiml(message.notice.call, self.voice(message), locale=message.notice.locale)

    def build_payload(self, message: Message) -> dict[str, Any]:
        """``{"method", "path", "form"}`` of the Calls request for this delivery."""
        form: dict[str, Any] = {
            "To": self._to(message),
            "From": self._setting("TWILIO_FROM"),
            "Twiml": self.twiml(message).xml,
        }
        callback = self.status_callback(message)
        if callback:
            form["StatusCallback"] = callback
            # sent as repeated form fields, one per event
            form["StatusCallbackEvent"] = list(CALL_EVENTS)
        return {"method": "POST", "path": self.path(), "form": form}

    def preview_html(self, message: Message) -> str:
        """The call as a reader hears it, then the raw TwiML."""
        n = message.notice
        voice = self.voice(message)
        twiml = self.twiml(message)
        fallback = (
            ""
            if voice.exact
            else f'<p class="warn">No voice for locale {_esc(n.locale)}: the en-US voice reads '
            "it.</p>"
        )
        spoken = "".join(
            f'<li lang="{_esc(n.locale)}" dir="{_dir(n.locale)}">{_esc(p)}</li>'
            for p in twiml.parts
        )
        return _page(
            n.locale,
            f"Call to {message.address or '?'}",
            f'{fallback}<p class="meta">Voice {_esc(voice.voice)} ({_esc(voice.language)}) · '
            f"read {twiml.readings}× · {len(twiml.xml)} of {TWIML_MAX_CHARS} TwiML characters</p>"
            f"<ol>{spoken}</ol><details><summary>TwiML</summary><pre>{_esc(twiml.xml)}</pre>"
            "</details>",
        )


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _page(locale: str, title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="{_esc(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:28rem;margin:1rem auto;padding:0 1rem}"
        ".bubble{background:#e9e9eb;border-radius:1.1rem;padding:.6rem .9rem;"
        "white-space:pre-wrap;overflow-wrap:anywhere}"
        ".meta{color:#444;font-size:.85rem}.warn{color:#8a1c1c}"
        "pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem}"
        f"</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>"
    )
