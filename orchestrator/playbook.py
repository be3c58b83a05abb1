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
#: joins an ``on_update`` step's id and its update's number in the ledger: ``sms-update@2``
UPDATE_MARK = "@"
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


BreachType = Literal["confidentiality", "integrity", "availability"]


class RegulatorNotice(_Strict):
    """The notice as a regulator reads it: the organisation's account of the breach in the
    third person, kept apart from the second-person texts written for the people affected.

    Reports to regulators (``breach report``) take their narrative items from here: the
    regimes table names, per regime, which of these fields each report item reads
    (``regulator.nature``, ``regulator.measures_taken`` ...). Every text is a Jinja2 template
    rendered like the rest of the notice, with the incident's facts, never with a person's.
    Write them as a regulator's form asks: what happened to which systems and data, when it
    was discovered, what the organisation did; not "you", not advice.
    """

    nature: str = Field(
        description="Nature of the breach: what happened, how and when it was discovered, "
        "which systems and data (GDPR Art. 33(3)(a), NIS2, 8-K Item 1.05, HHS, PDPC ...)."
    )
    consequences: str = Field(
        description="Likely consequences for the people affected, as the organisation assesses "
        "them (GDPR Art. 33(3)(c), PIPL possible harm, PDPC potential harm)."
    )
    measures_taken: str = Field(
        description="Measures taken to address the breach and mitigate its effects "
        "(GDPR Art. 33(3)(d), PIPL remedial measures, Texas measures taken)."
    )
    measures_proposed: str | None = Field(
        default=None,
        description="Measures proposed or planned (GDPR Art. 33(3)(d), Texas measures planned, "
        "APPI recurrence prevention).",
    )
    breach_type: list[BreachType] = Field(
        default_factory=list,
        description="Which security properties were breached: confidentiality (disclosure), "
        "integrity (alteration), availability (loss of access). Not a template.",
    )
    data_subjects: str | None = Field(
        default=None,
        description="Categories of the people affected (customers, patients, employees).",
    )
    data_involved: str | None = Field(
        default=None, description="The kinds of data involved, described for a regulator."
    )
    cause: str | None = Field(
        default=None, description="The cause or root cause, as far as known (PIPL, NIS2 final)."
    )
    material_impact: str | None = Field(
        default=None,
        description="Material impact, or reasonably likely material impact, on the organisation "
        "(SEC Form 8-K Item 1.05).",
    )
    not_yet_known: str | None = Field(
        default=None,
        description="What is not yet determined and will follow in a later phase "
        "(GDPR Art. 33(4), 8-K Instruction 2).",
    )

    #: the fields that are templates (``breach_type`` is a plain list)
    TEXTS: ClassVar[tuple[str, ...]] = ("nature", "consequences", "measures_taken",
                                         "measures_proposed", "data_subjects", "data_involved",
                                         "cause", "material_impact", "not_yet_known")  # fmt: skip


class FollowUpText(_Strict):
    """The follow-up notice in one locale: sent by `on_update` steps to people who received an
    earlier notice of the incident, after its facts were corrected or completed.

    Its templates may read ``update`` (``number``, ``reason``, ``at``, ``first_notice_at``,
    ``changes``: each with ``fact``, ``description``, ``old``, ``new``). ``what_happened`` is
    required: it is where a follow-up says what changed. ``impact``, ``measures``, ``advice``,
    ``contact``, ``data_involved``, ``remedies``, ``greeting`` and ``subject`` default to the
    first notice's; ``sms``, ``push`` and ``call`` default to texts that lead with
    ``what_happened`` (never to the first notice's, which would repeat it).
    """

    what_happened: str = Field(description="What changed since the first notice.")
    impact: str | None = None
    measures: str | None = None
    advice: str | None = None
    contact: str | None = None
    data_involved: str | None = None
    remedies: str | None = None
    subject: str | None = None
    greeting: str | None = None
    sms: str | None = None
    push: str | None = None
    call: str | None = None


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
    regulator: RegulatorNotice | None = Field(
        default=None,
        description="The notice as regulators read it (third person): the narrative of every "
        "report to a regulator. Needed in the default locale by a playbook with regulators.",
    )

    follow_up: FollowUpText | None = Field(
        default=None,
        description="The follow-up notice `on_update` steps send after `breach update`: what "
        "changed (`update.changes`, `update.reason`) and when the first notice went out "
        "(`update.first_notice_at`). Fields it leaves out are taken from this notice.",
    )

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
    phase: Literal["initial", "follow-up", "final"] | None = Field(
        default=None,
        description="For regulator steps: which phase of the report this filing is. A later "
        "phase references the earlier filing to the same regulator (default: the regime's "
        "phase, else the fact report_phase, else initial).",
    )
    notifier: str | None = Field(default=None, description="Pick one when several serve a channel.")
    misfire: Literal["run_late", "skip"] = "run_late"
    on_update: bool = Field(
        default=False,
        description="A follow-up step: it does not fire when the incident is triggered; each "
        "`breach update` fans it out (as STEP@N) to the people who received an earlier notice, "
        "with the notice's `follow_up` text. `at` counts from the update.",
    )
    dedupe: Literal["address", "none"] = Field(
        default="address",
        description="'address' (default): one message per phone number, e-mail address or push "
        "token in this step; the other people sharing it are skipped with the reason 'same "
        "address as <recipient id>' (also when the notice is personal). 'none': a message to "
        "every person, for notices that must reach each one by name.",
    )
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
    lead_authority: str | None = Field(
        default=None,
        description="For cross-border processing (GDPR Art. 56): the lead supervisory "
        "authority, named in reports when the fact cross_border is true.",
    )
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
        """The step of this id, or of a follow-up instance (``sms-update@2``: the ``on_update``
        step ``sms-update`` as fanned out for update 2, carrying the instance's id)."""
        base, mark, number = step_id.partition(UPDATE_MARK)
        found = next((s for s in self.steps if s.id == base), None)
        if not mark:
            return found
        if found is None or not found.on_update or not number.isdigit():
            return None
        return found.model_copy(update={"id": step_id})

    @property
    def update_steps(self) -> list[Step]:
        """The ``on_update`` steps: each update fans them out, none fires at trigger."""
        return [s for s in self.steps if s.on_update]

    @property
    def trigger_steps(self) -> list[Step]:
        """The steps that fire when the incident is triggered (all but ``on_update`` ones)."""
        return [s for s in self.steps if not s.on_update]


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of a playbook file (``breach schema``)."""
    schema = Playbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://breach-orchestrator.dev/schema/playbook.json"
    return schema
