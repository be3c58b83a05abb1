"""The audience: the affected people, streamed from a source, never loaded whole.

A source yields :class:`Recipient` rows. Contact fields are normalised on the way in (E.164 phone
numbers, syntactically valid e-mail addresses); a value that fails is not dropped but recorded in
``Recipient.invalid`` so every step can report the person as skipped with the reason.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol, TextIO, runtime_checkable

from .errors import AudienceError
from .limits import MAX_COLUMNS

CONTACT_FIELDS = ("phone", "email", "push_token")
_LABELS = {"phone": "phone number", "email": "e-mail address", "push_token": "push token"}


@dataclass(slots=True)
class Recipient:
    """One affected person. ``row`` is the 1-based position in the source, for error messages."""

    id: str
    row: int = 0
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    locale: str | None = None
    region: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: contact field -> reason it was rejected, e.g. {"phone": "invalid phone number"}
    invalid: dict[str, str] = field(default_factory=dict)

    def address(self, contact: str) -> tuple[str | None, str | None]:
        """(address, None) when reachable on ``contact``, else (None, reason it is not)."""
        if contact in self.invalid:
            return None, self.invalid[contact]
        value = getattr(self, contact)
        if not value:
            return None, f"no {_LABELS.get(contact, contact)}"
        return value, None


@runtime_checkable
class AudienceSource(Protocol):
    """An iterable of recipients that can be read more than once (once per step)."""

    description: str

    def __iter__(self) -> Iterator[Recipient]: ...


class AudienceSourceFactory(Protocol):
    """Opens a source from its target (a path or URL) and options (e.g. ``query``, ``params``)."""

    def __call__(self, target: str, options: Mapping[str, Any]) -> AudienceSource: ...


# -- opening a source from the command line's ``--audience`` -----------------------------------

# A plain path names its format by extension; gzip-compressed files are read as they stream.
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# A bare SQLAlchemy URL ("sqlite:///people.db") is read as "sql:<url>".
_SQL_DIALECTS = frozenset(
    {"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"}
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):(.*)", re.DOTALL)


def parse_audience_spec(spec: str) -> tuple[str, str]:
    """Split ``--audience`` into (scheme, target).

    ``csv:people.csv`` -> ("csv", "people.csv"); ``sql:sqlite:///x.db`` -> ("sql",
    "sqlite:///x.db"); a bare ``sqlite:///x.db`` means the same; a plain path goes by its
    extension (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``, each optionally ``.gz``). Any other
    ``scheme:target`` is passed on for a plugin's source. Single-letter schemes are Windows drive
    letters, not schemes.
    """
    text = spec.strip()
    match = _SCHEME.fullmatch(text)
    if match is not None:
        scheme, target = match.group(1).lower(), match.group(2).strip()
        if scheme.split("+", 1)[0] in _SQL_DIALECTS:
            return "sql", text
        if not target:
            raise AudienceError(
                f"audience {spec!r} names source {scheme!r} but no target: write {scheme}:TARGET"
            )
        return scheme, target
    if text:
        name = PurePath(text).name.lower()
        name = name.removesuffix(".gz")
        for extension, scheme in _EXTENSIONS.items():
            if name.endswith(extension):
                return scheme, text
    raise AudienceError(
        f"cannot tell the format of audience {spec!r}: use a .csv, .jsonl or .ndjson file (may be "
        "gzipped), or prefix a scheme, e.g. csv:people.txt, jsonl:people.log, "
        "sql:sqlite:///people.db"
    )


def open_audience(
    spec: str,
    options: Mapping[str, Any],
    lookup: Callable[[str], AudienceSourceFactory],
) -> AudienceSource:
    """Open the source ``spec`` names, with ``lookup`` (e.g. ``PluginHost.source_factory``).

    The source is checked to be an :class:`AudienceSource`, so a plugin returning something else
    is named now rather than failing midway through a step.
    """
    scheme, target = parse_audience_spec(spec)
    source = lookup(scheme)(target, options)
    if not isinstance(source, AudienceSource):
        raise AudienceError(
            f"audience source {scheme!r} returned {type(source).__name__}, which is not an "
            "iterable of recipients with a description; fix or update the plugin providing it"
        )
    return source


# -- helpers for source implementations (the core's and plugins') ----------------------------

#: The columns (CSV, SQL) or keys (JSONL) that fill Recipient fields; any other is an attr.
RECIPIENT_FIELDS = ("id", "name", "email", "phone", "push_token", "locale", "region")


def check_options(options: Mapping[str, Any], known: Mapping[str, str], source: str) -> None:
    """Raise AudienceError for an option ``source`` does not take; ``known`` maps name -> help.

    A misspelt option (``delimeter``) would otherwise be ignored and the file misread.
    """
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = "; ".join(f"{name} ({text})" for name, text in known.items()) or "none"
        raise AudienceError(
            f"{source} audience source does not take option(s) {', '.join(unknown)}; "
            f"it accepts: {accepted}"
        )


def open_text(path: Path, encoding: str) -> TextIO:
    """Open an audience file for streaming text, gunzipping on the fly when it ends in ``.gz``.

    ``newline=""`` keeps CR LF inside quoted CSV fields intact. Raises AudienceError naming the
    file when it is missing or unreadable, or when the encoding is unknown.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise AudienceError(
            f"audience file {path}: unknown encoding {encoding!r} (e.g. utf-8, cp1252, shift_jis)"
        ) from None
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rt", encoding=encoding, newline="")
        return open(path, encoding=encoding, newline="")
    except FileNotFoundError:
        raise AudienceError(f"audience file {path} does not exist") from None
    except IsADirectoryError:
        raise AudienceError(f"audience file {path} is a directory, not a file") from None
    except OSError as exc:
        raise AudienceError(f"audience file {path} cannot be opened: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Where each Recipient field and each extra attribute sits in a row of ``width`` columns."""

    #: index of each of RECIPIENT_FIELDS, in that order; -1 when the column is absent
    positions: tuple[int, ...]
    #: (column name, index) of every other column
    attrs: tuple[tuple[str, int], ...]
    width: int


def map_columns(names: Iterable[str], where: str) -> ColumnMap:
    """Map a header (CSV) or result columns (SQL) to Recipient fields, case-insensitively.

    Raises AudienceError, naming ``where``, when there is no ``id`` column or a name repeats:
    every row would otherwise be ambiguous or malformed.
    """
    fields: dict[str, int] = {}
    attrs: list[tuple[str, int]] = []
    seen: set[str] = set()
    listed = [str(n).strip() for n in names]
    if len(listed) > MAX_COLUMNS:
        raise AudienceError(f"{where} has {len(listed):,} columns, more than the {MAX_COLUMNS:,} "
                            "this reads; is the header the right line?")  # fmt: skip
    for index, name in enumerate(listed):
        key = name.lower()
        if key in seen:
            raise AudienceError(f"{where}: column {name!r} appears twice; rename one of them")
        seen.add(key)
        if key in RECIPIENT_FIELDS:
            fields[key] = index
        else:
            attrs.append((name, index))
    if "id" not in fields:
        shown = ", ".join(listed[:12]) + (", ..." if len(listed) > 12 else "")
        raise AudienceError(
            f"{where}: no 'id' column (columns: {shown or 'none'}); every person needs a unique "
            "id so deliveries can be tracked and retried"
        )
    return ColumnMap(
        positions=tuple(fields.get(f, -1) for f in RECIPIENT_FIELDS),
        attrs=tuple(attrs),
        width=len(listed),
    )


#: What reading an audience file can raise (gzip raises EOFError on a truncated file).
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, UnicodeDecodeError, csv.Error)


def read_error(path: Path, exc: Exception, where: str) -> AudienceError:
    """An AudienceError for ``exc`` raised while reading ``path`` at ``where`` (row, line)."""
    if isinstance(exc, UnicodeDecodeError):
        why = f"not {exc.encoding} text; pass the file's encoding, e.g. encoding=cp1252"
    elif "field larger than field limit" in str(exc):
        why = "a field is over 128 KiB, most likely an unclosed quote"
    else:
        why = str(exc) or type(exc).__name__
    return AudienceError(f"audience file {path}: unreadable {where}: {why}")
