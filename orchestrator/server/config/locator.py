"""Where keys are in a TOML text: ``FILE:LINE:COLUMN`` for problems tomllib cannot place.

tomllib reports positions of syntax errors only, and its parsed data keeps none; a light scan of
the text finds where each table and key was written.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence

from ...errors import Problem

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    """A TOML syntax error, located where tomllib says (or at the end of the file)."""
    message = str(exc)
    found = _TOML_POS.search(message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
        message = message[: found.start()]
    else:
        line, column = max(1, text.count("\n") + 1), 1
        message = _TOML_END.sub("", message) + " (at the end of the file)"
    return Problem(file, line, column, f"TOML syntax: {message}")


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str, start: int = 0) -> tuple[list[str], int] | None:
    """Parse a TOML (dotted, possibly quoted) key at ``start``: (parts, end index) or None."""
    parts: list[str] = []
    i = start
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            return None
        if text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < len(text) and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < len(text):
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= len(text):
                return None
            parts.append("".join(buf))
            i = j + 1
        else:
            bare = _BARE.match(text, i)
            if bare is None:
                return None
            parts.append(bare.group())
            i = bare.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


class Locator:
    """Line and column of keys and tables in a TOML text, found by a light scan.

    tomllib reports positions only for syntax errors; this finds where ``routes[2].mode`` was
    written so that semantic problems are located too (falling back to the enclosing table).
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.positions: dict[tuple[str, ...], tuple[int, int]] = {}
        arrays: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            stripped = line.lstrip()
            column = len(line) - len(stripped) + 1
            if stripped.startswith("[["):
                parsed = _split_key(stripped, 2)
                if parsed:
                    # the last part is the array itself; only its parents take their index
                    base = (*self._resolve(parsed[0][:-1], arrays), parsed[0][-1])
                    arrays[base] = arrays.get(base, -1) + 1
                    table = (*base, str(arrays[base]))
                    self.positions.setdefault(table, (number, column))
                continue
            if stripped.startswith("["):
                parsed = _split_key(stripped, 1)
                if parsed:
                    table = self._resolve(parsed[0], arrays)
                    self.positions.setdefault(table, (number, column))
                continue
            parsed = _split_key(stripped)
            if parsed is None or not stripped[parsed[1] :].startswith("="):
                continue
            self.positions.setdefault((*table, *parsed[0]), (number, column))
            for quote in ('"""', "'''"):
                if stripped.count(quote) % 2 == 1:
                    in_multiline = quote

    @staticmethod
    def _resolve(parts: Sequence[str], arrays: Mapping[tuple[str, ...], int]) -> tuple[str, ...]:
        """A header's path with the current index of every array of tables it passes through."""
        out: list[str] = []
        for part in parts:
            out.append(part)
            if tuple(out) in arrays:
                out.append(str(arrays[tuple(out)]))
        return tuple(out)

    def locate(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of ``path`` (dotted parts allowed), else of its nearest located ancestor."""
        parts: list[str] = []
        for p in path:
            parts.extend(str(p).split(".") if isinstance(p, str) else [str(p)])
        wanted = tuple(parts)
        while wanted:
            if wanted in self.positions:
                return self.positions[wanted]
            # a quoted key with dots ("labels.severity") was recorded as one part
            for length in range(len(wanted) - 1, 0, -1):
                joined = (*wanted[:length], ".".join(wanted[length:]))
                if joined in self.positions:
                    return self.positions[joined]
            wanted = wanted[:-1]
        return (1, 1)
