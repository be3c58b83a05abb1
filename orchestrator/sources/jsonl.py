"""JSON Lines audience files: ``--audience people.jsonl`` (or ``.ndjson``) or ``jsonl:PATH``.

One JSON object per line with the keys ``id`` (required; text or whole number), ``name``,
``email``, ``phone``, ``push_token``, ``locale``, ``region``; every other key goes to
``Recipient.attrs`` with its JSON type kept (``true`` stays a boolean, ``3`` a number).

Blank lines are skipped; ``Recipient.row`` counts the other lines from 1. A line that is not JSON,
or not an object, is kept as a malformed recipient with the reason and line number. ``.gz`` files
are decompressed as they stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..audience import READ_ERRORS, Recipient, check_options, open_text, read_error
from ..contacts import build_recipient, malformed_recipient
from ..errors import AudienceError
from ..limits import InputRejected, bounded_lines, check_value

OPTIONS = {"encoding": "text encoding; default utf-8"}


class JsonlSource:
    """A JSON Lines file of affected people, streamed afresh on every iteration."""

    def __init__(self, path: Path, *, encoding: str = "utf-8") -> None:
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # the same for files without a byte-order mark
        self.path = path
        self.encoding = encoding
        self.description = f"JSONL file {path}"
        open_text(path, encoding).close()  # fail now if it cannot be opened, not when a step fires

    def __iter__(self) -> Iterator[Recipient]:
        row = line_no = 0
        with open_text(self.path, self.encoding) as file:
            try:
                for line_no, line in enumerate(
                    bounded_lines(file, f"audience file {self.path}"), 1
                ):
                    if not line.strip():
                        continue
                    row += 1
                    yield _recipient(line, row, line_no)
            except READ_ERRORS as exc:
                where = f"after data row {row} (line {line_no})"
                raise read_error(self.path, exc, where) from None


def _recipient(line: str, row: int, line_no: int) -> Recipient:
    try:
        data = json.loads(line)
    except ValueError:
        return malformed_recipient(row, f"invalid JSON (line {line_no})")
    if not isinstance(data, dict):
        return malformed_recipient(row, f"not a JSON object (line {line_no})")
    try:
        check_value(data, f"line {line_no}")
    except InputRejected as exc:
        return malformed_recipient(row, str(exc))
    get = data.pop
    return build_recipient(
        row,
        id=get("id", None),
        name=get("name", None),
        email=get("email", None),
        phone=get("phone", None),
        push_token=get("push_token", None),
        locale=get("locale", None),
        region=get("region", None),
        attrs=data,
    )


def open_jsonl(target: str, options: Mapping[str, Any]) -> JsonlSource:
    """Factory for ``jsonl:PATH``; option: ``encoding``."""
    check_options(options, OPTIONS, "jsonl")
    encoding = options.get("encoding", "utf-8")
    if not isinstance(encoding, str):
        raise AudienceError(f"jsonl audience source: encoding must be text, got {encoding!r}")
    return JsonlSource(Path(target), encoding=encoding)
