"""The core's own audience sources (CSV, JSONL, SQL), registered like any plugin's."""

from __future__ import annotations

from collections.abc import Callable

from ..audience import AudienceSourceFactory
from ..hookspecs import hookimpl
from .csvfile import open_csv
from .jsonl import open_jsonl
from .sql import open_sql


@hookimpl
def register_audience_sources(register: Callable[[str, AudienceSourceFactory], None]) -> None:
    """``csv:PATH``, ``jsonl:PATH`` and ``sql:URL`` (with a ``query`` option)."""
    register("csv", open_csv)
    register("jsonl", open_jsonl)
    register("sql", open_sql)
