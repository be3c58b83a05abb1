"""CSV audience files: ``--audience people.csv`` or ``csv:PATH``.

The header names the columns: ``id`` (required), ``name``, ``email``, ``phone``, ``push_token``,
``locale``, ``region``, matched case-insensitively; every other column becomes an entry of
``Recipient.attrs``. Cells are text, except that ``true`` and ``false`` (any case) become booleans:
a playbook condition such as ``not recipient.attrs.credentials_breached`` would otherwise see the
non-empty string ``"false"`` as true. Use JSONL or SQL for numbers and other typed values.

Read as UTF-8 (a byte-order mark is skipped), with LF or CR LF line ends and quoted fields that may
span lines; ``.gz`` files are decompressed as they stream. The delimiter is taken from the header
line (``,`` ``;`` tab or ``|``, whichever it has most of) unless the ``delimiter`` option names it.

``Recipient.row`` counts data rows from 1 (the header and blank rows are not counted). A row with
the wrong number of fields or without an id is kept as a malformed recipient with the reason and
its line number, so the report accounts for it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..audience import (
    READ_ERRORS,
    ColumnMap,
    Recipient,
    check_options,
    map_columns,
    open_text,
    read_error,
)
from ..contacts import build_recipient, malformed_recipient
from ..errors import AudienceError
from ..limits import MAX_LINE_CHARS, bounded_lines

if TYPE_CHECKING:
    from _csv import Reader

OPTIONS = {
    "delimiter": "one character; default: detected from the header line",
    "encoding": "text encoding; default utf-8",
}
_DELIMITERS = (",", ";", "\t", "|")
_BOOLEANS = {"true": True, "false": False}


class CsvSource:
    """A CSV file of affected people, streamed afresh on every iteration."""

    def __init__(
        self, path: Path, *, delimiter: str | None = None, encoding: str = "utf-8"
    ) -> None:
        if delimiter is not None and len(delimiter) != 1:
            raise AudienceError(
                f"audience file {path}: delimiter must be one character, got {delimiter!r}"
            )
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # the same for files without a byte-order mark
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.description = f"CSV file {path}"
        # Read the header now: a file that cannot be read should fail when the step is planned,
        # not when it fires.
        with self._opened():
            pass

    def __iter__(self) -> Iterator[Recipient]:
        with self._opened() as (reader, columns):
            yield from _read(reader, columns, self.path)

    @contextmanager
    def _opened(self) -> Iterator[tuple[Reader, ColumnMap]]:
        """The file opened and its header read and mapped; every failure names the file."""
        with open_text(self.path, self.encoding) as file:
            try:
                first = file.readline(MAX_LINE_CHARS)
                file.seek(0)
                lines = bounded_lines(file, f"audience file {self.path}")
                reader = csv.reader(lines, delimiter=self.delimiter or _detect_delimiter(first))
                header = next(reader, None)
            except READ_ERRORS as exc:
                raise read_error(self.path, exc, "header") from None
            if not header or not any(h.strip() for h in header):
                raise AudienceError(
                    f"audience file {self.path} has no header row; the first line must name "
                    "the columns (id,name,email,phone,...)"
                )
            header[0] = header[0].lstrip("\ufeff")  # a BOM that came with an explicit encoding
            yield reader, map_columns(header, f"audience file {self.path}")


def _read(reader: Reader, columns: ColumnMap, path: Path) -> Iterator[Recipient]:
    """Recipients from the data rows of ``reader`` (positioned after the header)."""
    i_id, i_name, i_email, i_phone, i_push, i_locale, i_region = columns.positions
    width = columns.width
    attr_columns = columns.attrs
    booleans = _BOOLEANS
    row = 0
    try:
        for cells in reader:
            if len(cells) != width or not cells[i_id].strip():
                if not any(c.strip() for c in cells):
                    continue  # a blank line, or an all-empty row some spreadsheets append
                row += 1
                if len(cells) != width:
                    rid = cells[i_id].strip() if i_id < len(cells) else ""
                    yield malformed_recipient(
                        row,
                        f"{len(cells)} fields, header has {width} (line {reader.line_num})",
                        rid or None,
                    )
                else:
                    yield malformed_recipient(row, f"missing id (line {reader.line_num})")
                continue
            row += 1
            attrs = {
                name: booleans.get(cells[index].strip().lower(), cells[index])
                for name, index in attr_columns
            }
            yield build_recipient(
                row,
                id=cells[i_id],
                name=cells[i_name] if i_name >= 0 else None,
                email=cells[i_email] if i_email >= 0 else None,
                phone=cells[i_phone] if i_phone >= 0 else None,
                push_token=cells[i_push] if i_push >= 0 else None,
                locale=cells[i_locale] if i_locale >= 0 else None,
                region=cells[i_region] if i_region >= 0 else None,
                attrs=attrs,
            )
    except READ_ERRORS as exc:
        where = f"after data row {row} (line {reader.line_num})"
        raise read_error(path, exc, where) from None


def _detect_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties keep the earlier, i.e. ","
    return best if counts[best] else ","


def open_csv(target: str, options: Mapping[str, Any]) -> CsvSource:
    """Factory for ``csv:PATH``; options: ``delimiter``, ``encoding``."""
    check_options(options, OPTIONS, "csv")
    delimiter = options.get("delimiter")
    encoding = options.get("encoding", "utf-8")
    if delimiter is not None and not isinstance(delimiter, str):
        raise AudienceError(f"csv audience source: delimiter must be text, got {delimiter!r}")
    if not isinstance(encoding, str):
        raise AudienceError(f"csv audience source: encoding must be text, got {encoding!r}")
    return CsvSource(Path(target), delimiter=delimiter, encoding=encoding)
