"""The playbook language: the pydantic model behind every YAML file in ``playbooks/``.

The model checks shape and types; ``orchestrator.validation`` adds what needs context (templates,
installed channels, SMS segment budgets, regulators referenced by steps) and turns every problem
into a located ``FILE:LINE:COLUMN`` message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .durations import format_duration, parse_duration
from .regimes import Deadline

Severity = Literal["low", "medium", "high", "critical"]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
LocaleCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


def _to_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\+?(\d+[wdhms])+$", "examples": ["+0m", "+24h", "1h30m"]}
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(_Strict):
    """Who notifies: named in every notice and regulator report."""

    name: str
    contact_email: str
    contact_phone: str | None = None
    website: str | None = None
    dpo: str | None = Field(default=None, description="Data protection officer: name and contact.")
    address: str | None = None


FactType = Literal["string", "integer", "number", "boolean", "datetime", "list"]


class FactSpec(_Strict):
    """A fact the incident commander (or a webhook) supplies when the playbook is triggered."""

    type: FactType = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    example: Any = Field(
        default=None,
        description="Value used to render templates at validation time (else a typed sample).",
    )


class NoticeText(_Strict):
    """The notice in one locale. Every field is a Jinja2 template (sandboxed, strict)."""

    impact: str = Field(description="Likely consequences for the person.")
    measures: str = Field(description="What the organisation has done and will do.")
    advice: str = Field(description="What the person can do to protect themselves.")
    contact: str = Field(description="How to reach the organisation about this breach.")
    what_happened: str = Field(
        description="What happened: the basic situation of the breach, as the law asks a notice "
        "to describe it (when, how, what was reached)."
    )
    data_involved: str | None = None
    remedies: str | None = Field(
        default=None,
        description="What the organisation offers the person (credit monitoring, a new card); "
        "rendered in e-mail, the public page and calls.",
    )
    subject: str | None = Field(default=None, description="E-mail subject, push and page title.")
    greeting: str | None = Field(
        default=None,
        description="Salutation for one person, e.g. 'Dear {{ recipient.name }},'; left out of "
        "public notices and regulator reports.",
    )
    sms: str | None = Field(default=None, description="SMS text; defaults to a compact notice.")
    push: str | None = Field(default=None, description="Push body; defaults to the impact.")
    call: str | None = Field(default=None, description="Voice script; defaults to the full notice.")

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "what_happened",
        "impact",
        "measures",
        "advice",
        "contact",
    )


class Approval(_Strict):
    """A gate: the step waits until people holding enough of its roles approve it.

    ``approval: {role: dpo}`` asks one role; ``approval: {roles: [dpo, legal], quorum: 2}`` asks
    approvals from ``quorum`` distinct roles of the list (default: all of them). ``cli: false``
    means the step can only be approved through the commander API, where a token's roles are
    checked, not with ``breach approve``.
    """

    role: str = "incident-commander"
    roles: list[Identifier] | None = Field(
        default=None, min_length=1, description="Roles that may approve; replaces `role`."
    )
    quorum: int | None = Field(
        default=None, ge=1, description="Distinct roles needed (default: all of `roles`)."
    )
    cli: bool = Field(default=True, description="May `breach approve` open this gate?")
    reason: str = ""

    @model_validator(mode="after")
    def _quorum_within_roles(self) -> Approval:
        if self.roles is not None and "role" in self.model_fields_set:
            raise ValueError("give either `role` or `roles`, not both")
        if self.quorum is not None and self.quorum > len(self.required_roles):
            raise ValueError(
                f"quorum {self.quorum} is more than the {len(self.required_roles)} role(s) listed"
            )
        return self

    @property
    def required_roles(self) -> list[str]:
        """The roles that may approve, in the playbook's order."""
        return list(self.roles) if self.roles is not None else [self.role]

    @property
    def needed(self) -> int:
        """How many distinct roles must approve before the step may fire."""
        return self.quorum if self.quorum is not None else len(self.required_roles)

    @property
    def label(self) -> str:
        """``dpo``, ``dpo and legal``, ``2 of dpo, legal, ciso``: for messages."""
        roles = self.required_roles
        if self.needed == len(roles):
            return " and ".join(roles)
        return f"{self.needed} of {', '.join(roles)}"


FallbackTrigger = Literal["unreachable", "bounce", "undelivered", "failed", "no_receipt"]


class Fallback(_Strict):
    """Where people go whom this step cannot reach.

    ``unreachable`` (no usable contact) is decided at fan-out; ``failed`` (refused or given up)
    and ``bounce`` / ``undelivered`` (a provider receipt) as soon as they happen; ``no_receipt``
    once a sent message has gone ``after`` without confirmation. The step stays open for
    ``after`` past its last send, waiting for receipts.
    """

    channel: str
    notifier: str | None = Field(default=None, description="Pick one when several serve it.")
    after: Duration = timedelta(0)
    on: list[FallbackTrigger] = Field(default_factory=lambda: ["unreachable"])  # type: ignore[arg-type]

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"channel": value} if isinstance(value, str) else value


class BeforeDeadline(_Strict):
    """Fire ``margin`` before the deadline of one of the playbook's regulators."""

    before_deadline: str = Field(description="Id of a regulator declared in `regulators`.")
    margin: Duration = timedelta(0)


class Step(_Strict):
    """One notification action."""

    id: Identifier
    channel: str = Field(
        description="Channel of an installed notifier.",
        examples=["sms", "call", "email", "push", "announcement", "regulator"],
    )
    at: Annotated[
        Duration | datetime | BeforeDeadline,
        Field(description="Offset from aware_at ('+24h'), an absolute time, or before a deadline."),
    ] = timedelta(0)
    condition: str | None = Field(
        default=None,
        description="Expression over facts and counts deciding whether the step fires, "
        "e.g. 'counts.unreachable > 500'.",
    )
    recipients: str | None = Field(
        default=None,
        description="Expression over recipient and facts; people for whom it is false are "
        "skipped, e.g. 'not recipient.attrs.credentials_breached'.",
    )
    approval: Approval | None = None
    fallback: Fallback | None = None
    regulator: str | None = Field(default=None, description="For regulator steps: which one.")
    notifier: str | None = Field(default=None, description="Pick one when several serve a channel.")
    misfire: Literal["run_late", "skip"] = "run_late"
    description: str = ""

    @field_validator("at", mode="wrap")
    @classmethod
    def _parse_at(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, str) and value.strip().startswith("+"):
            return parse_duration(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, dict):
            # only the before_deadline form is a mapping: its own errors say what is wrong
            return BeforeDeadline.model_validate(value)
        try:
            return handler(value)
        except ValidationError:
            # every form refused it; one message listing the forms beats one per form
            raise PydanticCustomError(
                "time",
                "invalid time; write an offset like '+24h', an ISO time, or "
                "{before_deadline: REGULATOR, margin: 6h}",
            ) from None


class Regulator(_Strict):
    """A regulator the playbook may report to, with its regime's deadline."""

    id: Identifier
    name: str
    regime: str = Field(description="Regime id, e.g. gdpr-art33 (see `breach regimes`).")
    jurisdiction: str | None = None
    deadline: Deadline | None = Field(default=None, description="Overrides the regime's deadline.")
    email: str | None = None
    url: str | None = None


class Limits(_Strict):
    """Budgets checked at validation time."""

    sms_segments: int = Field(default=3, ge=1, le=10)


class Playbook(_Strict):
    """A versioned response to one kind of incident."""

    id: Identifier
    title: str
    version: int | str
    severity: Severity
    description: str = ""
    organisation: Organisation
    jurisdictions: list[str] = Field(default_factory=list)
    default_locale: LocaleCode = "en"
    facts: dict[Identifier, FactSpec] = Field(default_factory=dict)
    notice: dict[LocaleCode, NoticeText]
    regulators: list[Regulator] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    limits: Limits = Limits()
    #: the YAML text it was parsed from (recorded with every incident it opens)
    _source_text: str = PrivateAttr(default="")

    @property
    def source_text(self) -> str:
        """The YAML text this playbook was parsed from ("" when built in code)."""
        return self._source_text

    def regulator(self, regulator_id: str) -> Regulator | None:
        return next((r for r in self.regulators if r.id == regulator_id), None)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of a playbook file (``breach schema``)."""
    schema = Playbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://breach-orchestrator.dev/schema/playbook.json"
    return schema
