"""The notifier contract: what a plugin implements to deliver on one channel.

The core never knows which provider sits behind a channel. It hands a notifier batches of
:class:`~orchestrator.message.Message`, asks it for the exact payload its provider would receive
(dry-run writes that payload to the outbox) and, when live, for :class:`Receipt` objects. The core
decides retries; a notifier only classifies each outcome.
"""

from __future__ import annotations

import contextlib
import html
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from .errors import ConfigurationError
from .logs import register_secret
from .message import Message

Contact = Literal["phone", "email", "push_token"]
Mode = Literal["live", "sandbox", "dry-run"]


@dataclass(frozen=True)
class Setting:
    """A configuration value a notifier reads from the environment (or ``NAME_FILE``)."""

    name: str
    description: str
    required: bool = True
    secret: bool = False


class Outcome(StrEnum):
    """How one delivery attempt ended, as the notifier classifies it."""

    SENT = "sent"  # accepted by the provider
    TRANSIENT = "transient"  # retry later (timeouts, 5xx, 429)
    PERMANENT = "permanent"  # never retry (invalid number, unregistered token, most 4xx)


@dataclass(frozen=True)
class Receipt:
    """The result of sending one message."""

    delivery_id: str
    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from Retry-After / X-RateLimit-Reset
    #: the provider may have accepted the message although no answer said so (a timeout, a
    #: connection lost after the request went out): a retry may deliver it twice, and the
    #: ledger counts it among the possible duplicates
    uncertain: bool = False


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Notifier(ABC):
    """Base class of every notifier plugin.

    Subclasses set the class attributes and implement :meth:`build_payload`; live delivery
    implements :meth:`send`. ``settings`` is the resolved configuration (environment values);
    ``clock`` gives the current time (aware, UTC) wherever a payload shows one, such as a
    notice's date, so that tests can fix it (default: the system clock).
    """

    name: ClassVar[str]
    channel: ClassVar[str]
    #: the recipient field this channel needs; None = one message per step (public, regulator)
    contact: ClassVar[Contact | None] = None
    max_batch: ClassVar[int] = 1
    #: batches this notifier may have in flight at once (None: the engine's --concurrency)
    max_concurrency: ClassVar[int | None] = None
    #: messages per second when the playbook or config sets no rate
    default_rate: ClassVar[float] = 10.0
    settings_spec: ClassVar[tuple[Setting, ...]] = ()

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings: Mapping[str, str] = dict(settings or {})
        self.clock: Callable[[], datetime] = _utcnow if clock is None else clock

    @classmethod
    def check_facts(cls, facts: Mapping[str, Any]) -> list[str]:
        """What is wrong with the incident facts this notifier reads (empty: nothing).

        Called when an incident is triggered and whenever its facts change, so a bad value is
        refused then, with the fact named, instead of failing the step when it fires (perhaps
        hours later, with a deadline running). Override when :meth:`build_payload` reads facts
        beyond the playbook's declared types.
        """
        return []

    def missing_settings(self) -> list[str]:
        """Names of required settings that are not set (never their values)."""
        return [s.name for s in self.settings_spec if s.required and not self.settings.get(s.name)]

    def missing_settings_for(self, mode: Mode) -> list[str]:
        """Names of the settings sending in ``mode`` needs that are not set.

        Dry-run needs none (nothing leaves the machine); live and sandbox need
        :meth:`missing_settings` unless a notifier overrides this, as one whose sandbox uses
        other credentials (Twilio's test account) does. The pre-flight of a trigger asks this,
        so a sandbox incident is refused up front instead of failing every send.
        """
        if mode == "dry-run":
            return []
        return self.missing_settings()

    def require_settings(self) -> None:
        """Raise :class:`ConfigurationError` naming what :meth:`missing_settings` lists, if any.

        For :meth:`send` to call before it reaches a provider: a missing credential would fail
        every message alike.
        """
        missing = self.missing_settings()
        if missing:
            raise ConfigurationError(f"{self.name}: set {' and '.join(missing)} to send")

    def seconds_setting(self, name: str, default: float) -> float:
        """The setting ``name`` as a number of seconds (a timeout, an interval), or ``default``.

        Raises :class:`ConfigurationError` when it is set to anything but a finite number > 0.
        """
        raw = self.settings.get(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigurationError(f"{name} must be a number of seconds > 0, not {raw!r}")
        return value

    @abstractmethod
    def build_payload(self, message: Message) -> dict[str, Any]:
        """The exact body the provider (or output) receives for this message."""

    def shared_payload(self, message: Message) -> Any:
        """The part of :meth:`build_payload` that every recipient of one notice shares.

        A fan-out calls it once per step, locale and notice version, with any one message of
        that notice (once per person when the notice's templates read ``recipient``, since each
        person's text differs then), and never per person otherwise: build the provider body's
        expensive common part here (an e-mail's rendered HTML, a push notification's text).
        Together with :meth:`personal_payload` it must determine :meth:`build_payload`: the
        core hashes both into the delivery's content hash. Default: nothing shared.
        """
        return None

    def personal_payload(self, message: Message) -> Any:
        """This person's part of :meth:`build_payload`: address, delivery id, name.

        Called for every person, so keep it cheap: a few strings (anything JSON can encode).
        Default: the whole payload, which is always correct and as slow as building it.
        """
        return self.build_payload(message)

    def preview_html(self, message: Message) -> str:
        """A human preview of one message; plugins override with their real rendering."""
        n = message.notice
        rows = "".join(
            f"<h2>{html.escape(k.replace('_', ' ').title())}</h2><p>{html.escape(v)}</p>"
            for k, v in n.sections()
        )
        return (
            f'<!doctype html><html lang="{html.escape(n.locale)}"><meta charset="utf-8">'
            f"<title>{html.escape(n.subject)}</title><h1>{html.escape(n.subject)}</h1>{rows}</html>"
        )

    async def send(self, batch: Sequence[Message], mode: Mode) -> Sequence[Receipt]:
        """Deliver a batch (at most ``max_batch``); one receipt per message, in any order."""
        raise NotImplementedError(f"notifier {self.name!r} cannot send yet")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections; called once when the engine stops."""


def resolve_settings(cls: type[Notifier], env: Mapping[str, str]) -> dict[str, str]:
    """A notifier's settings from the environment; ``NAME_FILE`` points at a file holding NAME."""
    out: dict[str, str] = {}
    for spec in cls.settings_spec:
        if env.get(spec.name):
            out[spec.name] = env[spec.name]
        elif env.get(spec.name + "_FILE"):
            # An unreadable file is reported as a missing setting, by name only.
            with contextlib.suppress(OSError):
                out[spec.name] = Path(env[spec.name + "_FILE"]).read_text("utf-8").strip()
        if spec.secret and spec.name in out:
            register_secret(out[spec.name])  # never printed, whatever logs it by mistake
    return out
