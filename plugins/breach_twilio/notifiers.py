"""Twilio notifiers: SMS through the Messages API, voice calls through the Calls API.

``build_payload`` returns the exact request (method, path, form fields) the Twilio REST API
receives; the auth token never appears in it (it is HTTP Basic auth at send time). Settings that
are not configured show as ``<NAME>`` placeholders so a dry run still shows the request's shape.

``send`` hands those same form fields to the SDK (``messages.create_async`` /
``calls.create_async`` over :class:`.live.FormHttpClient`, an ``AsyncTwilioHttpClient`` that
posts the form as one urlencoded body), one request per message, and classifies each answer (see
:mod:`.outcomes`). Sandbox mode sends with Twilio's test credentials, which validate the request
and never deliver; Twilio accepts only its magic sender number with them.
"""

from __future__ import annotations

import asyncio
import html
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.plugin import (
    BreachError,
    ConfigurationError,
    Contact,
    Message,
    Mode,
    Notifier,
    Outcome,
    Receipt,
    Setting,
    direction,
)
from orchestrator.plugin.reasons import mask_reason

from .callbacks import with_delivery
from .outcomes import classify_rest_error
from .sms import MAX_BODY_CHARS, SmsTooLong, count_segments
from .twiml import TWIML_MAX_CHARS, Twiml, Voice, build_twiml, voice_for

if TYPE_CHECKING:
    from .live import TwilioSession

log = logging.getLogger(__name__)

API_VERSION_PATH = "/2010-04-01/Accounts/{sid}"
RECEIPT_PATH = "/receipts/twilio"
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
#: Seconds to wait for one answer when TWILIO_TIMEOUT is not set.
DEFAULT_TIMEOUT = 30.0
#: Twilio's magic sender for test credentials: "passes all validation".
TEST_FROM = "+15005550006"

_SID = Setting("TWILIO_ACCOUNT_SID", "Twilio account SID (AC...)")
_TOKEN = Setting("TWILIO_AUTH_TOKEN", "Twilio auth token", secret=True)
_RECEIPTS = Setting(
    "BREACH_RECEIPT_BASE_URL",
    "Public base URL of the receipt endpoint; Twilio posts status callbacks to "
    "<base>/receipts/twilio",
    required=False,
)
_BASE_URL = Setting(
    "TWILIO_API_BASE_URL",
    "Base URL replacing https://api.twilio.com (a simulator or a recording proxy); "
    "leave unset in production",
    required=False,
)
_TIMEOUT = Setting(
    "TWILIO_TIMEOUT",
    f"Seconds to wait for Twilio's answer to one request (default {DEFAULT_TIMEOUT:g})",
    required=False,
)
_TEST_SID = Setting(
    "TWILIO_TEST_ACCOUNT_SID",
    "Test account SID used in sandbox mode (Console > Account > API keys > Test credentials)",
    required=False,
)
_TEST_TOKEN = Setting(
    "TWILIO_TEST_AUTH_TOKEN", "Test auth token used in sandbox mode", required=False, secret=True
)
_TEST_FROM = Setting(
    "TWILIO_TEST_FROM",
    f"Sender in sandbox mode (default {TEST_FROM}, the number Twilio's test credentials accept)",
    required=False,
)
_LIVE_SETTINGS = (_RECEIPTS, _BASE_URL, _TIMEOUT, _TEST_SID, _TEST_TOKEN, _TEST_FROM)


def _placeholder(name: str) -> str:
    return f"<{name}>"


class _TwilioNotifier(Notifier):
    """What the SMS and call notifiers share: account path, addressing, status callbacks."""

    endpoint: ClassVar[str]

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(settings)
        # one SDK client (and its aiohttp session) per mode, reused across batches
        self._sessions: dict[str, TwilioSession] = {}

    def _setting(self, name: str) -> str:
        return self.settings.get(name) or _placeholder(name)

    def path(self) -> str:
        """The request path under https://api.twilio.com."""
        sid = self._setting("TWILIO_ACCOUNT_SID")
        return f"{API_VERSION_PATH.format(sid=sid)}/{self.endpoint}"

    def status_callback(self, message: Message) -> str | None:
        """Where Twilio reports delivery status: the core's URL, else the configured base.

        The delivery id rides in the query string (``?delivery_id=...``): Twilio's callbacks
        carry no field of ours, and the receipt handler finds the delivery by it.
        """
        if message.status_callback:
            url = message.status_callback
        else:
            base = self.settings.get("BREACH_RECEIPT_BASE_URL")
            if not base:
                return None
            url = base.rstrip("/") + RECEIPT_PATH
        return with_delivery(url, message.delivery_id)

    @staticmethod
    def _to(message: Message) -> str:
        if not message.address:
            raise ValueError(f"delivery {message.delivery_id} has no phone number to send to")
        return message.address

    def shared_payload(self, message: Message) -> dict[str, Any]:
        """The request without its recipient: path, sender and the notice's text."""
        payload = self.build_payload(message)
        personal = ("To", "StatusCallback")
        return {**payload, "form": {k: v for k, v in payload["form"].items() if k not in personal}}

    def personal_payload(self, message: Message) -> list[str | None]:
        """The number, and the status callback that carries the delivery id."""
        return [self._to(message), self.status_callback(message)]

    # -- live sending ------------------------------------------------------------------------

    def sandboxed(self) -> _TwilioNotifier:
        """The same notifier with Twilio's test credentials and sender (sandbox mode).

        Test credentials cannot use a Messaging Service, so the magic sender replaces it.
        """
        missing = [
            name
            for name in ("TWILIO_TEST_ACCOUNT_SID", "TWILIO_TEST_AUTH_TOKEN")
            if not self.settings.get(name)
        ]
        if missing:
            raise ConfigurationError(
                f"{self.name}: sandbox mode sends with Twilio's test credentials; set "
                + " and ".join(missing)
            )
        settings = {k: v for k, v in self.settings.items() if k != "TWILIO_MESSAGING_SERVICE_SID"}
        settings["TWILIO_ACCOUNT_SID"] = self.settings["TWILIO_TEST_ACCOUNT_SID"]
        settings["TWILIO_AUTH_TOKEN"] = self.settings["TWILIO_TEST_AUTH_TOKEN"]
        settings["TWILIO_FROM"] = self.settings.get("TWILIO_TEST_FROM") or TEST_FROM
        return type(self)(settings)

    def missing_settings_for(self, mode: Mode) -> list[str]:
        """Sandbox sends with the test credentials only (the magic sender stands in for the
        sender); live needs the account's own settings."""
        if mode == "sandbox":
            return [n for n in ("TWILIO_TEST_ACCOUNT_SID", "TWILIO_TEST_AUTH_TOKEN")
                    if not self.settings.get(n)]  # fmt: skip
        return super().missing_settings_for(mode)

    def timeout(self) -> float:
        """Seconds to wait for one answer (TWILIO_TIMEOUT, default 30)."""
        return self.seconds_setting("TWILIO_TIMEOUT", DEFAULT_TIMEOUT)

    def _session(self, mode: Mode, source: _TwilioNotifier) -> TwilioSession:
        session = self._sessions.get(mode)
        if session is not None and session.usable():
            return session
        from .live import TwilioSession  # the SDK loads only when something is really sent

        # a placeholder sender or account would reach Twilio and fail every message alike
        source.require_settings()
        # A session made on an earlier event loop cannot be used (nor closed) from this one.
        session = TwilioSession(
            source.settings["TWILIO_ACCOUNT_SID"],
            source.settings["TWILIO_AUTH_TOKEN"],
            self.settings.get("TWILIO_API_BASE_URL") or None,
        )
        self._sessions[mode] = session
        return session

    @abstractmethod
    async def _create(self, session: TwilioSession, form: Mapping[str, Any]) -> str:
        """Send one request of this notifier's kind; returns the new resource's SID."""

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """One request per message; one receipt per message, in the batch's order.

        Provider answers never raise: they become transient or permanent receipts. A missing
        credential raises :class:`ConfigurationError` before anything is sent.
        """
        source = self.sandboxed() if mode == "sandbox" else self
        timeout = self.timeout()
        session = None if mode == "dry-run" else self._session(mode, source)
        receipts = []
        for message in batch:
            try:
                payload = source.build_payload(message)
            except (BreachError, ValueError) as exc:
                receipts.append(Receipt(message.delivery_id, Outcome.PERMANENT, error=str(exc)))
                continue
            if session is None:  # dry-run: built and checked, nothing leaves the machine
                receipts.append(Receipt(message.delivery_id, Outcome.SENT))
                continue
            receipts.append(await self._deliver(session, message, payload["form"], timeout))
        return receipts

    async def _deliver(
        self, session: TwilioSession, message: Message, form: Mapping[str, Any], timeout: float
    ) -> Receipt:
        try:
            # The async client ignores its own timeout setting (create_async passes none on),
            # so the deadline is kept here.
            async with asyncio.timeout(timeout):
                sid = await self._create(session, form)
        except Exception as exc:  # sorted by type in _failed, which re-raises what it does not know
            return _failed(message.delivery_id, exc, timeout)
        return Receipt(message.delivery_id, Outcome.SENT, provider_id=sid)

    async def aclose(self) -> None:
        """Close the SDK's HTTP sessions made on the running event loop."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            if session.usable():
                await session.aclose()
            else:
                log.debug("twilio session of an earlier event loop left to the garbage collector")


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
        *_LIVE_SETTINGS,
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

    async def _create(self, session: TwilioSession, form: Mapping[str, Any]) -> str:
        return await session.create_message(form)

    def preview_html(self, message: Message) -> str:
        """The SMS as a phone bubble, with its encoding and segment count."""
        n = message.notice
        seg = count_segments(n.sms)
        unit = "septets" if seg.encoding == "GSM-7" else "UTF-16 units"
        plural = "" if seg.segments == 1 else "s"
        return _page(
            n.locale,
            f"SMS to {message.address or '?'}",
            f'<p class="bubble" lang="{_esc(n.locale)}" dir="{direction(n.locale)}">'
            f"{_esc(n.sms)}</p>"
            f'<p class="meta">{seg.segments} segment{plural} · {seg.encoding} · '
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
        *_LIVE_SETTINGS,
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

    async def _create(self, session: TwilioSession, form: Mapping[str, Any]) -> str:
        return await session.create_call(form)

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
            f'<li lang="{_esc(n.locale)}" dir="{direction(n.locale)}">{_esc(p)}</li>'
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


def _failed(key: str, exc: Exception, timeout: float) -> Receipt:
    """The receipt of a request that raised ``exc``; anything not a provider's answer or a
    network failure (a bug) is raised again.

    The SDK's exception types are imported here, on the failure path only, not per message.
    """
    import aiohttp
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    from .live import never_sent

    if isinstance(exc, TwilioRestException):
        outcome, reason = classify_rest_error(int(exc.status), exc.code, str(exc.msg or ""))
        return Receipt(key, outcome, error=reason)
    if isinstance(exc, TwilioServiceException):
        text = str(exc.detail or exc.title or "")
        outcome, reason = classify_rest_error(int(exc.status), exc.code, text)
        return Receipt(key, outcome, error=reason)
    if isinstance(exc, TimeoutError):
        # the request may have gone out and been accepted: a retry may send it twice
        error = f"twilio: no answer within {timeout:g} s (TWILIO_TIMEOUT)"
        return Receipt(key, Outcome.TRANSIENT, error=error, uncertain=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        error = mask_reason(f"twilio: connection failed: {type(exc).__name__}: {exc}")
        return Receipt(key, Outcome.TRANSIENT, error=error, uncertain=not never_sent(exc))
    raise exc


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
