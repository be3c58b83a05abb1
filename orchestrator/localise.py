"""Dates and numbers as a notice's readers write them, through Babel's CLDR data.

``{{ facts.breach_started | date('%d %B %Y') }}`` reads "05 March 2026" in an English notice and
"05 März 2026" in a German one; ``date('long')`` (or ``short``, ``medium``, ``full``) uses the
locale's own order and words ("5. März 2026", "2026年3月5日"); without an argument a date is ISO
(``2026-03-05``). ``{{ n | number }}`` groups digits the locale's way ("12,345", "12.345").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

#: strftime directives and the CLDR pattern that writes the same thing in any locale
_DIRECTIVES = {
    "d": "dd", "-d": "d", "e": "d", "m": "MM", "-m": "M", "B": "MMMM", "b": "MMM", "Y": "yyyy",
    "y": "yy", "A": "EEEE", "a": "EEE", "H": "HH", "-H": "H", "I": "hh", "M": "mm", "p": "a",
    "Z": "zzz", "z": "xx", "%": "%",
}  # fmt: skip
_DIRECTIVE = re.compile(r"%(-?[A-Za-z%])")
_NAMED = ("short", "medium", "long", "full")


@cache
def babel_locale(tag: str | None) -> Locale:
    """The Babel locale of a notice locale tag (``de``, ``pt-BR``); English when unknown."""
    try:
        return Locale.parse((tag or "en").replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def cldr_pattern(strftime: str) -> str:
    """A strftime format as a CLDR pattern (literal text quoted), e.g. ``%d %B %Y`` ->
    ``dd MMMM yyyy``."""
    out, last = [], 0
    for match in _DIRECTIVE.finditer(strftime):
        out.append(_quote(strftime[last : match.start()]))
        out.append(_DIRECTIVES.get(match.group(1), _quote(match.group(0))))
        last = match.end()
    out.append(_quote(strftime[last:]))
    return "".join(out)


def _quote(text: str) -> str:
    if not text:
        return ""
    if not re.search(r"[A-Za-z']", text):
        return text
    return "'" + text.replace("'", "''") + "'"


def format_when(value: Any, fmt: str | None, locale: str | None) -> str:
    """The ``date`` filter: a date or datetime (or ISO text) written in ``locale``."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, date):
        return str(value)
    fmt = fmt or "%Y-%m-%d"
    where = babel_locale(locale)
    pattern = fmt if fmt in _NAMED else cldr_pattern(fmt)
    if isinstance(moment, datetime):
        return (
            format_datetime(moment, pattern, tzinfo=moment.tzinfo, locale=where)
            if fmt not in _NAMED
            else format_date(moment.date(), fmt, locale=where)
        )
    return format_date(moment, pattern, locale=where)


def format_count(value: Any, locale: str | None) -> str:
    """The ``number`` filter: digits grouped as ``locale`` groups them."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_decimal(value, locale=babel_locale(locale))
    return str(value)
