"""Located problems from pydantic's validation errors, for every file a model checks.

A playbook (YAML) and the server config (TOML) are both checked by a pydantic model; this turns
the model's errors into :class:`~orchestrator.errors.Problem` lines, ``FILE:LINE:COLUMN:
message``. The file's format decides where a path was written and how a message names it (a
:class:`Document`); the model decides which keys exist, so the "did you mean" of an unknown key
follows the model's fields with no list of keys kept by hand.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from .errors import Problem

#: a place in a document: mapping keys and list indexes, outermost first
DataPath = Sequence[str | int]


class Document(Protocol):
    """A checked file as problems see it: where a path was written, and what a message calls it."""

    @property
    def file(self) -> str:
        """The file's name as problems print it."""

    def locate(self, path: DataPath, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of ``path`` (of its key with ``key``), else of an ancestor."""

    def describe(self, path: DataPath, *, key: bool = False) -> str:
        """What a message about ``path`` starts with; ``""`` when its location says enough.

        ``key`` is true when the message is about the key itself (an unknown key).
        """


def located(document: Document, path: DataPath, message: str, *, key: bool = False) -> Problem:
    """A problem at ``path`` of ``document``, its message led by the document's name for it."""
    line, column = document.locate(path, key=key)
    name = document.describe(path, key=key)
    return Problem(document.file, line, column, f"{name}: {message}" if name else message)


def model_problems(
    error: ValidationError, data: Any, model: type[BaseModel], document: Document
) -> list[Problem]:
    """Every error of ``model.model_validate(data)``, located in ``document``, each said once.

    An unknown key gets a "did you mean" from the fields ``model`` allows at its place (or the
    list of them); a missing key is located at the mapping that lacks it.
    """
    out: set[Problem] = set()  # the branches of a union may each say the same
    for detail in error.errors():
        kind = detail["type"]
        path = _data_path(detail["loc"], data, keep_last=kind in ("missing", "extra_forbidden"))
        if kind == "extra_forbidden":
            problem = located(document, path, _unknown_key(model, path), key=True)
        elif kind == "missing" and path:
            # located at the mapping that lacks the key, named by the key's full path
            # (``notice.de.what_happened``) so the reader knows where it belongs
            line, column = document.locate(path[:-1])
            name = document.describe(path)
            problem = Problem(document.file, line, column, f"{name}: required but missing")
        else:
            problem = located(document, path, _plain(detail["msg"]))
        out.add(problem)
    return sorted(out)


def known_keys(model: type[BaseModel], path: DataPath) -> list[str]:
    """The keys a mapping at ``path`` may hold, read from ``model``'s field annotations.

    Each part of ``path`` is followed through the annotations: a model's field, a mapping's
    values (its keys are data), a list's items, every member of a union such as ``X | None``.
    The answer is the fields of every model reached (none when the place takes any key).
    """
    shapes: list[Any] = [model]
    for part in path:
        shapes = [inner for shape in shapes for inner in _inside(shape, part)]
    models = [found for shape in shapes for found in _members(shape) if _is_model(found)]
    return sorted({name for found in models for name in found.model_fields})


#: pydantic names the kind of input a message is about; the path in front already says which
_SUBJECT = re.compile(r"^(?:Value error, |(?:Input|String|List|Dictionary|Tuple|Set) (?=should))")


def _plain(message: str) -> str:
    return _SUBJECT.sub("", message)


def _unknown_key(model: type[BaseModel], path: Sequence[str | int]) -> str:
    known = known_keys(model, path[:-1])
    hint = difflib.get_close_matches(str(path[-1]), known, n=1)
    return f"unknown key {path[-1]!r}" + (
        f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
    )


def _data_path(loc: Sequence[int | str], data: Any, *, keep_last: bool) -> tuple[str | int, ...]:
    """The parts of ``loc`` that are keys and indexes of ``data``.

    pydantic also lists the union member or validator an error came from (``int``,
    ``function-after[...]``): those are not in the data. ``keep_last`` keeps the last part
    anyway: the key that is missing, or not allowed.
    """
    path: list[str | int] = []
    node = data
    for number, part in enumerate(loc):
        present = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if present:
            path.append(part)
            node = node[part]
        elif keep_last and number == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _is_model(shape: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(shape, type) and issubclass(shape, BaseModel)


def _members(shape: Any) -> Iterator[Any]:
    """``shape`` with ``Annotated`` taken off and unions (``X | None``) spread out."""
    origin = typing.get_origin(shape)
    if origin is typing.Annotated:
        yield from _members(typing.get_args(shape)[0])
    elif origin is typing.Union or origin is types.UnionType:
        for member in typing.get_args(shape):
            yield from _members(member)
    else:
        yield shape


def _inside(shape: Any, part: str | int) -> Iterator[Any]:
    """The shapes the value at ``part`` of a ``shape`` value may have."""
    for member in _members(shape):
        if _is_model(member):
            field = member.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                yield field.annotation
            continue
        origin, args = typing.get_origin(member), typing.get_args(member)
        if not isinstance(origin, type) or not args:
            continue
        if issubclass(origin, Mapping):
            yield args[-1]
        elif isinstance(part, int) and issubclass(origin, tuple) and args[-1] is not Ellipsis:
            yield from args[part : part + 1]
        elif isinstance(part, int) and issubclass(origin, Sequence | AbstractSet):
            yield args[0]
