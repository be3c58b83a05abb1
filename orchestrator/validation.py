"""Playbook validation: every problem of a file at once, each located as ``FILE:LINE:COLUMN``.

Shape and types come from the pydantic model (its errors located by :mod:`.problems`); the rest
needs context: templates rendered with sample facts, channels of the installed plugins, SMS
segment budgets, regulators and regimes.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, meta
from pydantic import ValidationError

from . import conditions, facts
from .errors import Problem, ValidationFailed
from .limits import InputRejected, read_document
from .locations import SourceMap, load_yaml
from .notice import REGULATOR_PREFIX, NoticeRenderer, template_context
from .playbook import BeforeDeadline, Playbook
from .pluginhost import PluginHost
from .problems import model_problems
from .regimes import Regime, builtin_regimes
from .segments import count_segments
from .updates import follow_up_playbook, sample_update

#: names a step `condition` may read; `facts.*` must be declared facts
CONDITION_ROOTS = {"facts", "counts", "severity", "jurisdictions", "mode"}
COUNT_NAMES = {"total", "reached", "unreachable", "invalid", "channel", "skipped", "regions"}
#: names a step `recipients` filter may read
RECIPIENT_ROOTS = {"recipient", "facts", "severity"}
RECIPIENT_FIELDS = {"id", "name", "locale", "region", "attrs", "has_phone", "has_email",
                    "has_push_token"}  # fmt: skip


class _AnyAttrs(dict[str, Any]):
    """Audience attributes are unknown at validation time: any key reads as sample text."""

    def __missing__(self, key: str) -> str:
        return "sample"


def sample_recipient(locale: str) -> dict[str, Any]:
    return {"id": "sample-0001", "name": "Alexandra Example-Sample", "locale": locale,
            "region": "US", "attrs": _AnyAttrs()}  # fmt: skip


def sample_incident(playbook: Playbook) -> dict[str, Any]:
    moment = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    return {"id": "INC-20260101-SAMPLE", "aware_at": moment, "notice_date": moment,
            "title": playbook.title}  # fmt: skip


def validate_text(
    text: str,
    file: str,
    *,
    host: PluginHost | None = None,
    regimes: dict[str, Regime] | None = None,
    warnings: list[Problem] | None = None,
) -> tuple[Playbook | None, list[Problem]]:
    """Validate one playbook's YAML text. Returns the playbook (None if unusable) and problems.

    ``warnings``, when given, receives what does not stop the playbook from running: each item
    a regulator's report must state that the playbook cannot give (the report would say "not
    yet known" there), and later-phase filings with nothing to supplement.
    """
    data, smap, problems = load_yaml(text, file)
    if data is None:
        return None, problems
    if not isinstance(data, dict):
        return None, [*problems, smap.problem((), "a playbook must be a mapping of keys")]
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        shape = model_problems(exc, data, Playbook, _PlaybookDocument(smap))
        return None, sorted(problems + shape)
    playbook._source_text = text
    table = regimes or builtin_regimes()
    problems += _semantic_problems(playbook, smap, host, table)
    if warnings is not None and not problems:  # the report reads a playbook that renders
        warnings += sorted(_report_problems(playbook, smap, table))
    return playbook, sorted(problems)


def validate_file(
    path: Path,
    *,
    host: PluginHost | None = None,
    regimes: dict[str, Regime] | None = None,
    warnings: list[Problem] | None = None,
) -> tuple[Playbook | None, list[Problem]]:
    """Validate one playbook file (see :func:`validate_text`)."""
    try:
        text = read_document(path, "playbook")
    except InputRejected as exc:
        return None, [Problem(str(path), 0, 0, str(exc))]
    return validate_text(text, str(path), host=host, regimes=regimes, warnings=warnings)


def load_playbook(
    path: Path, *, host: PluginHost | None = None, regimes: dict[str, Regime] | None = None
) -> Playbook:
    """A valid playbook, or :class:`ValidationFailed` carrying every problem."""
    playbook, problems = validate_file(path, host=host, regimes=regimes)
    if problems or playbook is None:
        raise ValidationFailed(problems)
    return playbook


# -- shape and types -----------------------------------------------------------------------


@dataclass(frozen=True)
class _PlaybookDocument:
    """A playbook's source map, naming paths as playbook messages do: ``steps.2.channel``."""

    smap: SourceMap

    @property
    def file(self) -> str:
        return self.smap.file

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        return self.smap.locate(path, key=key)

    def describe(self, path: Sequence[str | int], *, key: bool = False) -> str:
        # an unknown key is located at the key itself, and the message names it
        return "" if key else ".".join(str(p) for p in path) or "playbook"


# -- meaning ----------------------------------------------------------------------------------


def _semantic_problems(
    playbook: Playbook, smap: SourceMap, host: PluginHost | None, regimes: dict[str, Regime]
) -> list[Problem]:
    out: list[Problem] = []
    out += _duplicates([s.id for s in playbook.steps], "steps", "step id", smap)
    out += _duplicates([r.id for r in playbook.regulators], "regulators", "regulator id", smap)
    if playbook.default_locale not in playbook.notice:
        out.append(
            smap.problem(
                ["default_locale"], f"default_locale {playbook.default_locale!r} has no notice text"
            )
        )
    for i, regulator in enumerate(playbook.regulators):
        if regulator.regime not in regimes and regulator.deadline is None:
            out.append(
                smap.problem(
                    ["regulators", i, "regime"],
                    _unknown(
                        "regime", regulator.regime, regimes, "or give the regulator a `deadline:`"
                    ),
                )
            )
    channels = host.channels() if host is not None else None
    for i in range(len(playbook.steps)):
        out += _step_problems(playbook, i, smap, channels, regimes)
    out += _template_problems(playbook, smap)
    out += _follow_up_problems(playbook, smap, host)
    return out


def _duplicates(ids: list[str], key: str, what: str, smap: SourceMap) -> list[Problem]:
    out, seen = [], set()
    for i, ident in enumerate(ids):
        if ident in seen:
            out.append(smap.problem([key, i, "id"], f"duplicate {what} {ident!r}"))
        seen.add(ident)
    return out


def _unknown(what: str, name: str, known: Iterable[str], extra: str = "") -> str:
    known = sorted(known)
    hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    tail = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(known) or 'none'}"
    return f"unknown {what} {name!r}; {tail}" + (f" {extra}" if extra else "")


def _step_problems(
    playbook: Playbook,
    i: int,
    smap: SourceMap,
    channels: dict[str, list[str]] | None,
    regimes: dict[str, Regime],
) -> list[Problem]:
    step = playbook.steps[i]
    here: list[int | str] = ["steps", i]
    out: list[Problem] = []
    regulator_ids = [r.id for r in playbook.regulators]
    if channels is not None:
        out += _notifier_problems([*here], step.channel, step.notifier, channels, smap)
        if step.fallback is not None:
            out += _notifier_problems([*here, "fallback"], step.fallback.channel,
                                      step.fallback.notifier, channels, smap)  # fmt: skip
    if step.channel == "regulator" and step.regulator is None:
        out.append(smap.problem(here, f"step {step.id!r}: a regulator step names its `regulator:`"))
    if step.regulator is not None and step.regulator not in regulator_ids:
        out.append(
            smap.problem([*here, "regulator"], _unknown("regulator", step.regulator, regulator_ids))
        )
    if isinstance(step.at, BeforeDeadline):
        target = playbook.regulator(step.at.before_deadline)
        if target is None:
            out.append(
                smap.problem(
                    [*here, "at", "before_deadline"],
                    _unknown(
                        "regulator",
                        step.at.before_deadline,
                        regulator_ids,
                        "(declare it under `regulators:`)",
                    ),
                )
            )
        else:
            deadline = (
                target.deadline or regimes[target.regime].deadline
                if target.regime in regimes or target.deadline
                else None
            )
            if deadline is not None and deadline.unit == "none":
                out.append(
                    smap.problem(
                        [*here, "at", "before_deadline"],
                        f"regulator {target.id!r} ({target.regime}) has no fixed "
                        "deadline to count back from",
                    )
                )
    if step.condition is not None:
        out += _condition_problems(
            step.condition, [*here, "condition"], CONDITION_ROOTS, playbook, smap
        )
    if step.recipients is not None:
        out += _condition_problems(
            step.recipients, [*here, "recipients"], RECIPIENT_ROOTS, playbook, smap
        )
    return out


def _notifier_problems(
    here: list[int | str],
    channel: str,
    notifier: str | None,
    channels: dict[str, list[str]],
    smap: SourceMap,
) -> list[Problem]:
    """The channel must be installed, and the notifier for it unambiguous."""
    serving = channels.get(channel, [])
    key = "channel" if here[-1] != "fallback" else None
    where = [*here, key] if key else here
    if not serving:
        return [smap.problem(where, _unknown("channel", channel, channels,
                                             "(no installed plugin provides it)"))]  # fmt: skip
    if notifier is not None and notifier not in serving:
        return [smap.problem([*here, "notifier"], _unknown(
            f"notifier for channel {channel!r}", notifier, serving))]  # fmt: skip
    if notifier is None and len(serving) > 1:
        return [smap.problem(where, f"several notifiers serve channel {channel!r} "
                             f"({', '.join(serving)}): name one with `notifier:`")]  # fmt: skip
    return []


def _condition_problems(
    source: str, path: list[int | str], roots: set[str], playbook: Playbook, smap: SourceMap
) -> list[Problem]:
    line, column = smap.locate(path)
    try:
        parsed = conditions.parse(source)
    except conditions.ConditionError as exc:
        return [Problem(smap.file, line, column + exc.column - 1, str(exc))]
    out = []
    for name in sorted(parsed.names):
        parts = name.split(".")
        root = parts[0]
        if root in ("true", "false", "null", "none"):
            continue
        if root not in roots:
            out.append(Problem(smap.file, line, column, _unknown("name", root, roots)))
        elif root == "facts" and len(parts) > 1 and parts[1] not in playbook.facts:
            out.append(
                Problem(
                    smap.file,
                    line,
                    column,
                    _unknown("fact", parts[1], playbook.facts, "(declare it under `facts:`)"),
                )
            )
        elif root == "counts" and len(parts) > 1 and parts[1] not in COUNT_NAMES:
            out.append(Problem(smap.file, line, column, _unknown("count", parts[1], COUNT_NAMES)))
        elif root == "recipient" and len(parts) > 1 and parts[1] not in RECIPIENT_FIELDS:
            out.append(
                Problem(
                    smap.file, line, column, _unknown("recipient field", parts[1], RECIPIENT_FIELDS)
                )
            )
    return out


class _AnyRegion(dict[str, int]):
    """Audience regions are unknown at validation time: every region reads as one person."""

    def __missing__(self, key: str) -> int:
        return 1


def _report_problems(
    playbook: Playbook, smap: SourceMap, regimes: dict[str, Regime]
) -> list[Problem]:
    """Every item a regulator's report must state that the playbook cannot give (an
    undeclared fact, a missing regulator text), located where it should be given; and
    later-phase steps with no earlier filing to supplement."""
    from .reporting import check_items

    locale = playbook.default_locale
    renderer = NoticeRenderer(playbook)
    context = template_context(playbook=playbook, incident=sample_incident(playbook),
                               facts=facts.samples(playbook.facts))  # fmt: skip
    notice = renderer.render_public(locale, context)
    texts = ("what_happened", "data_involved", "impact", "measures", "advice", "remedies",
             "contact", "subject")  # fmt: skip
    out: list[Problem] = []
    for i, regulator in enumerate(playbook.regulators):
        regime = regimes.get(regulator.regime)
        if regime is None or not regime.report_items:
            continue
        scope = {
            "facts": dict(context["facts"]), "severity": playbook.severity,
            "counts": {"total": 1, "regions": _AnyRegion()},
            "notice": {k: getattr(notice, k) for k in texts},
            "regulator": dict(notice.regulator or {}),
            "organisation": playbook.organisation.model_dump(),
            "incident": dict(context["incident"]),
            "notified": {"total": 0, "by_channel": {}},
            "authority": regulator.model_dump(mode="json"),
        }  # fmt: skip
        for check in check_items(regime, scope):
            if check.missing:
                where, hint = _report_item_home(playbook, check.source, i)
                line, column = smap.locate(where, key=True)
                out.append(Problem(smap.file, line, column, (
                    f"regulator {regulator.id!r} ({regulator.regime}): its report must state "
                    f"{check.item!r} ({check.label}), read from {check.source}, which this "
                    f"playbook does not give: {hint}"), "warning"))  # fmt: skip
    for i, step in enumerate(playbook.steps):
        if step.regulator is None or step.phase in (None, "initial"):
            continue
        target = playbook.regulator(step.regulator)
        regime = regimes.get(target.regime) if target is not None else None
        follows = regime.follows if regime is not None else None
        filed_to = [playbook.regulator(s.regulator) for s in playbook.steps[:i] if s.regulator]
        earlier = [r for r in filed_to if r is not None and (
            r.id == step.regulator or (follows is not None and r.regime == follows))]  # fmt: skip
        if not earlier:
            line, column = smap.locate(["steps", i, "phase"])
            out.append(Problem(smap.file, line, column, (
                f"step {step.id!r} files a {step.phase} report to {step.regulator!r}, but no "
                "earlier step files to it: a later phase references the earlier filing"),
                "warning"))  # fmt: skip
    return out


def _report_item_home(playbook: Playbook, source: str, index: int) -> tuple[list[int | str], str]:
    """Where in the playbook a report item's source should be given, and how."""
    names = sorted(conditions.parse(source).names)
    roots = [n.split(".")[0] for n in names]
    locale = playbook.default_locale
    text = playbook.notice.get(locale)
    if "regulator" in roots:
        fields = ", ".join(n.split(".", 1)[1] for n in names if n.startswith("regulator."))
        if text is not None and text.regulator is not None:
            return ["notice", locale, "regulator"], f"write {fields} here"
        return ["notice", locale], f"add a `regulator:` section (third person) with {fields}"
    if "facts" in roots:
        wanted = ", ".join(n.split(".", 1)[1] for n in names if n.startswith("facts."))
        return ["facts"], f"declare fact {wanted} (with a default or an example)"
    if "organisation" in roots:
        wanted = ", ".join(n.split(".", 1)[1] for n in names if n.startswith("organisation."))
        return ["organisation"], f"give organisation {wanted}"
    if "notice" in roots:
        wanted = ", ".join(n.split(".", 1)[1] for n in names if n.startswith("notice."))
        return ["notice", locale], f"write {wanted}"
    return ["regulators", index], f"give {', '.join(names)}"


def _template_problems(playbook: Playbook, smap: SourceMap) -> list[Problem]:
    renderer = NoticeRenderer(playbook)
    out = [
        smap.problem(
            ["notice", p.locale, *p.field.split(".")], f"notice {p.locale}.{p.field}: {p.message}"
        )
        for p in renderer.problems
    ]
    broken = {(p.locale, p.field) for p in renderer.problems}
    sample_facts = facts.samples(playbook.facts)
    uses_sms = any(
        s.channel == "sms" or (s.fallback is not None and s.fallback.channel == "sms")
        for s in playbook.steps
    )
    for locale, text in playbook.notice.items():
        if any(loc == locale for loc, _ in broken):
            continue
        context = template_context(
            playbook=playbook,
            incident=sample_incident(playbook),
            facts=sample_facts,
            recipient=sample_recipient(locale),
        )
        failures = renderer.check(locale, context)
        for failure in failures:
            message = f"notice {locale}.{failure.field}: {failure.message}"
            if "facts" in failure.message or "has no attribute" in failure.message:
                message += f" (declared facts: {', '.join(playbook.facts) or 'none'})"
            if "'update' is undefined" in failure.message:
                message += f" (`update` is read in notice.{locale}.follow_up only)"
            if failure.field.startswith(REGULATOR_PREFIX):
                out.append(smap.problem(["notice", locale, *failure.field.split(".")], message))
            elif failure.field in text.model_fields_set:
                out.append(smap.problem(["notice", locale, failure.field], message))
            else:  # a built-in default template failed because of another field
                out.append(smap.problem(["notice", locale], message))
        if failures:
            continue
        notice = renderer.render(locale, context)
        if uses_sms:
            count = count_segments(notice.sms)
            budget = playbook.limits.sms_segments
            if count.segments > budget:
                where = ["notice", locale, "sms"] if text.sms else ["notice", locale]
                unit = "septets" if count.encoding == "GSM-7" else "code units"
                out.append(
                    smap.problem(
                        where,
                        (
                            f"notice {locale}.sms needs {count.segments} {count.encoding} segments "
                            f"({count.units} {unit}) "
                            f"but limits.sms_segments is {budget}; shorten it"
                        ),
                    )
                )
    return out


def _follow_up_problems(
    playbook: Playbook, smap: SourceMap, host: PluginHost | None
) -> list[Problem]:
    """``on_update`` steps and ``follow_up`` notices: each needs the other, an ``on_update`` step
    sends to people after an update (its ``at`` an offset from it), and a follow-up renders
    with a sample ``update`` and says what changed."""
    out: list[Problem] = []
    updating = [(i, s) for i, s in enumerate(playbook.steps) if s.on_update]
    for i, step in updating:
        if not isinstance(step.at, timedelta):
            out.append(smap.problem(["steps", i, "at"], f"step {step.id!r} is on_update: its `at` "
                                    "is an offset from the update ('+0m', '+1h')"))  # fmt: skip
        if host is not None and step.channel in host.channels():
            notifier = host.notifier(step.channel, step.notifier)
            if notifier.contact is None:
                out.append(smap.problem(["steps", i, "on_update"], (
                    f"step {step.id!r}: channel {step.channel!r} sends one message per step, "
                    "not one per person; on_update steps send follow-up notices to the people "
                    "who received an earlier notice")))  # fmt: skip
    for locale, text in playbook.notice.items():
        if updating and text.follow_up is None:
            out.append(smap.problem(["notice", locale], (
                f"notice {locale} has no `follow_up:` text, which on_update step "
                f"{updating[0][1].id!r} sends: add one whose what_happened says what changed "
                "({{ update.changes }}, {{ update.reason }})")))  # fmt: skip
        elif text.follow_up is not None and not updating:
            out.append(smap.problem(["notice", locale, "follow_up"], (
                f"notice {locale}.follow_up is sent by no step: mark the step that sends it "
                "`on_update: true`")))  # fmt: skip
    if not updating:
        return out
    merged = follow_up_playbook(playbook)
    renderer = NoticeRenderer(merged)
    sample_facts = facts.samples(playbook.facts)
    uses_sms = any(s.channel == "sms" or (s.fallback is not None and s.fallback.channel == "sms")
                   for _, s in updating)  # fmt: skip
    for locale, text in playbook.notice.items():
        follow = text.follow_up
        if follow is None:
            continue
        here: list[int | str] = ["notice", locale, "follow_up"]
        reads = set()
        for name in follow.model_fields_set:
            source = getattr(follow, name)
            if isinstance(source, str):
                with contextlib.suppress(TemplateError):  # reported below, with its field
                    reads |= meta.find_undeclared_variables(renderer.env.parse(source))
        if "update" not in reads:
            out.append(
                smap.problem(
                    here,
                    (
                        f"notice {locale}.follow_up never reads `update`: a follow-up must say "
                        "what changed, e.g. {{ update.changes }} and {{ update.reason }} in "
                        "what_happened"
                    ),
                )
            )
        context = {
            **template_context(playbook=merged, incident=sample_incident(playbook),
                               facts=sample_facts, recipient=sample_recipient(locale)),
            "update": sample_update(playbook),
        }  # fmt: skip
        # Fields the follow-up takes from the first notice were checked with it above.
        own = follow.model_fields_set | {"sms", "push", "call"}
        problems = [p for p in renderer.problems if p.locale == locale and p.field in own]
        problems = problems or [p for p in renderer.check(locale, context) if p.field in own]
        for p in problems:
            where = [*here, p.field] if p.field in follow.model_fields_set else here
            out.append(smap.problem(where, f"notice {locale}.follow_up.{p.field}: {p.message}"))
        if problems or not uses_sms:
            continue
        count = count_segments(renderer.render(locale, context).sms)
        if count.segments > playbook.limits.sms_segments:
            where = [*here, "sms"] if follow.sms else here
            out.append(smap.problem(where, (
                f"notice {locale}.follow_up.sms needs {count.segments} {count.encoding} "
                f"segments but limits.sms_segments is {playbook.limits.sms_segments}; "
                "shorten it")))  # fmt: skip
    return out
