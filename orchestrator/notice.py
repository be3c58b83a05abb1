"""Notice rendering: the playbook's per-locale templates turned into plain text.

Templates are compiled once in a Jinja2 ``SandboxedEnvironment`` with ``StrictUndefined``, so a
misspelled variable is an error, never a blank. Only the playbook's own texts are templates; facts,
recipient fields and alert text are passed in as values and can never be executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from .localise import format_count, format_when
from .message import RenderedNotice
from .playbook import NoticeText, Playbook, RegulatorNotice
from .segments import count_segments

BASE_FIELDS = ("subject", "greeting", "impact", "measures", "advice", "contact",
               "what_happened", "data_involved", "remedies")  # fmt: skip
DERIVED_FIELDS = ("sms", "push", "call")
#: the regulator-voice section's templates, named ``regulator.FIELD`` in problems
REGULATOR_PREFIX = "regulator."
#: who "recipient" is on a public notice or a regulator report
PUBLIC_RECIPIENT: dict[str, Any] = {
    "id": "public", "name": "", "locale": None, "region": None, "attrs": {}
}  # fmt: skip
#: used when a locale does not write its own channel text; they read the rendered base fields
DEFAULTS = {
    "subject": "{{ playbook.title }}",
    "sms": "{{ organisation.name }}: {{ notice.what_happened }} {{ notice.impact }} "
    "{{ notice.advice }} {{ notice.contact }}",
    "push": "{{ notice.impact }}",
    "call": "{{ notice.greeting or '' }} {{ notice.what_happened }} {{ notice.impact }} "
    "{{ notice.measures }} {{ notice.advice }}"
    "{% if notice.remedies %} {{ notice.remedies }}{% endif %} {{ notice.contact }}",
}
#: the default SMS without what happened: used when the full one would exceed the playbook's
#: ``limits.sms_segments``, so the default never costs more segments than the author allowed
SHORT_SMS = "{{ organisation.name }}: {{ notice.impact }} {{ notice.advice }} {{ notice.contact }}"


#: the context key holding the locale a notice is being rendered in (read by the filters)
LOCALE_KEY = "notice_locale"


@pass_context
def _format_date(context: Context, value: Any, fmt: str | None = None) -> str:
    return format_when(value, fmt, context.get(LOCALE_KEY))


@pass_context
def _format_number(context: Context, value: Any) -> str:
    return format_count(value, context.get(LOCALE_KEY))


def make_environment() -> SandboxedEnvironment:
    """The one environment all notice templates compile in."""
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    env.filters["date"] = _format_date
    env.filters["number"] = _format_number
    return env


@dataclass(frozen=True)
class TemplateProblem:
    """A template that cannot compile or render; ``field`` is the NoticeText field."""

    locale: str
    field: str
    message: str
    line: int = 1


class NoticeRenderer:
    """Renders a playbook's notice for any locale and recipient.

    A locale whose templates never mention ``recipient`` is rendered once per incident and the
    result shared, which keeps a million-person fan-out cheap.
    """

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self.env = make_environment()
        self.problems: list[TemplateProblem] = []
        self._templates: dict[str, dict[str, Any]] = {}
        self._personal: dict[str, bool] = {}
        self._cache: dict[str, RenderedNotice] = {}
        #: locales whose SMS is the default text, with the shorter default compiled beside it
        self._short_sms: dict[str, Any] = {}
        for locale, text in playbook.notice.items():
            self._compile(locale, text)

    def _compile(self, locale: str, text: NoticeText) -> None:
        compiled: dict[str, Any] = {}
        personal = False
        sources = {name: getattr(text, name) or DEFAULTS.get(name)
                   for name in (*BASE_FIELDS, *DERIVED_FIELDS)}  # fmt: skip
        if text.regulator is not None:
            sources.update({REGULATOR_PREFIX + name: getattr(text.regulator, name)
                            for name in RegulatorNotice.TEXTS})  # fmt: skip
        for name, source in sources.items():
            if source is None:
                continue
            try:
                ast = self.env.parse(source)
                compiled[name] = self.env.from_string(source)
            except TemplateError as exc:
                line = getattr(exc, "lineno", 1) or 1
                self.problems.append(TemplateProblem(locale, name, f"template error: {exc}", line))
                continue
            # Only templates reading `recipient` differ per person; the rest render once. The
            # regulator's texts are never rendered for a person.
            if not name.startswith(REGULATOR_PREFIX) and "recipient" in (
                meta.find_undeclared_variables(ast)
            ):
                personal = True
        if text.sms is None:
            self._short_sms[locale] = self.env.from_string(SHORT_SMS)
        self._templates[locale] = compiled
        self._personal[locale] = personal

    def locale_for(self, wanted: str | None) -> str:
        """The best notice locale for a person: exact, then language, then the default."""
        if wanted:
            if wanted in self._templates:
                return wanted
            lang = wanted.split("-")[0].lower()
            if lang in self._templates:
                return lang
            for locale in self._templates:
                if locale.split("-")[0] == lang:
                    return locale
        return self.playbook.default_locale

    def locale_gaps(self, people: Mapping[str, int]) -> list[str]:
        """Warnings for audience locales (tag -> people) that no notice serves in their
        language, one per language: those people would get another language's notice."""
        unserved: dict[tuple[str, str], dict[str, int]] = {}
        for tag, count in people.items():
            chosen = self.locale_for(tag) if tag else None
            language = tag.split("-")[0].lower()
            if chosen is not None and chosen.split("-")[0].lower() != language:
                unserved.setdefault((language, chosen), {})[tag] = count
        out = []
        for (language, chosen), tags in sorted(unserved.items()):
            n = sum(tags.values())
            who = f"{n:,} {'person' if n == 1 else 'people'} with locale {', '.join(sorted(tags))}"
            out.append(f"{who} would get the {chosen} notice: add a `{language}` notice")
        return out

    def is_personal(self, locale: str) -> bool:
        return self._personal.get(locale, False)

    def render_public(self, locale: str, context: Mapping[str, Any]) -> RenderedNotice:
        """The notice as the public and regulators read it: no greeting, no person's name."""
        public = {**context, "recipient": PUBLIC_RECIPIENT}
        notice, problems = self._render(
            locale, public, stop_on_error=True, skip=("greeting",), regulator=True
        )
        assert notice is not None and not problems
        return notice

    def render(self, locale: str, context: Mapping[str, Any]) -> RenderedNotice:
        """Render every field of ``locale``; raises jinja2 errors (callers record them)."""
        if not self._personal[locale] and locale in self._cache:
            return self._cache[locale]
        notice, problems = self._render(locale, context, stop_on_error=True)
        assert notice is not None and not problems
        if not self._personal[locale]:
            self._cache[locale] = notice
        return notice

    def check(self, locale: str, context: Mapping[str, Any]) -> list[TemplateProblem]:
        """Render ``locale`` and report every field that fails, not just the first."""
        return self._render(locale, context, stop_on_error=False, regulator=True)[1]

    def _render(
        self,
        locale: str,
        context: Mapping[str, Any],
        *,
        stop_on_error: bool,
        skip: tuple[str, ...] = (),
        regulator: bool = False,
    ) -> tuple[RenderedNotice | None, list[TemplateProblem]]:
        templates = self._templates[locale]
        values: dict[str, str | None] = {}
        problems: list[TemplateProblem] = []
        derived_context = {**context, "notice": values, LOCALE_KEY: locale}
        for name in (*BASE_FIELDS, *DERIVED_FIELDS):
            template = None if name in skip else templates.get(name)
            if template is None:
                values[name] = None
                continue
            try:
                # Derived fields read the base ones through `notice`, filled in just above.
                values[name] = _clean(template.render(derived_context))
            except TemplateError as exc:
                if stop_on_error:
                    raise
                problems.append(TemplateProblem(locale, name, str(exc)))
                values[name] = ""
        section = self._regulator(locale, derived_context, problems) if regulator else None
        if problems:
            if stop_on_error:
                raise TemplateError(problems[0].message)
            return None, problems
        short = self._short_sms.get(locale)
        sms = values["sms"]
        # the default SMS tells what happened only when that fits the segment budget
        if short is not None and sms is not None and self._over_budget(sms):
            values["sms"] = _clean(short.render(derived_context))
        return RenderedNotice(locale=locale, regulator=section, **values), []  # type: ignore[arg-type]

    def _regulator(
        self, locale: str, context: Mapping[str, Any], problems: list[TemplateProblem]
    ) -> dict[str, Any] | None:
        """The regulator-voice section of ``locale`` rendered (None when it has none)."""
        text = self.playbook.notice[locale].regulator
        if text is None:
            return None
        templates = self._templates[locale]
        section: dict[str, Any] = {"breach_type": list(text.breach_type)}
        for name in RegulatorNotice.TEXTS:
            template = templates.get(REGULATOR_PREFIX + name)
            if template is None:
                section[name] = None
                continue
            try:
                section[name] = _clean(template.render(context))
            except TemplateError as exc:
                problems.append(TemplateProblem(locale, REGULATOR_PREFIX + name, str(exc)))
                section[name] = ""
        return section

    def _over_budget(self, sms: str) -> bool:
        return count_segments(sms).segments > self.playbook.limits.sms_segments


def _clean(text: str) -> str:
    # YAML block scalars leave trailing newlines and authors indent freely; messages should not.
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def template_context(
    *,
    playbook: Playbook,
    incident: Mapping[str, Any],
    facts: Mapping[str, Any],
    recipient: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a notice template can use."""
    return {
        "playbook": {"id": playbook.id, "title": playbook.title, "version": playbook.version,
                     "severity": playbook.severity},
        "organisation": playbook.organisation.model_dump(),
        "incident": dict(incident),
        "facts": dict(facts),
        "recipient": dict(recipient) if recipient is not None else {},
    }  # fmt: skip
