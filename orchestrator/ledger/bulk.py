"""Fan-out rows into PostgreSQL with COPY, keeping what a plain insert says about duplicates.

A fan-out batch (thousands of rows) is streamed with ``COPY`` into a temporary table of the
connection, then moved into ``deliveries`` with one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING RETURNING``: rows whose (incident, step, recipient) exists already, or repeats an
earlier row of the batch, are left out, and the caller learns which by what came back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table

from .models import Delivery

__all__ = ["copy_deliveries"]

DELIVERIES = cast(Table, Delivery.__table__)
#: every column a fan-out writes (the id comes from the table's sequence)
COLUMNS = tuple(c.name for c in DELIVERIES.columns if c.name != "id")
JSON_COLUMNS = frozenset(c.name for c in DELIVERIES.columns if c.type.__class__.__name__ == "JSON")
LOAD = "breach_delivery_load"
_names = ", ".join(COLUMNS)
# Per connection, emptied at every commit; its columns copy the table's at first use.
_CREATE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {LOAD} ON COMMIT DELETE ROWS AS "
    f"SELECT {_names}, 0::bigint AS load_pos FROM deliveries WITH NO DATA"
)
_COPY = f"COPY {LOAD} ({_names}, load_pos) FROM STDIN"
_MOVE = (
    f"INSERT INTO deliveries ({_names}) SELECT {_names} FROM {LOAD} ORDER BY load_pos "
    "ON CONFLICT DO NOTHING RETURNING key, recipient_row"
)


def copy_deliveries(connection: Connection, rows: Sequence[dict[str, Any]]) -> Counter[Any]:
    """COPY ``rows`` (full Delivery column dicts) in, inside the caller's transaction.

    Returns how many rows were inserted per (key, recipient row): a row of ``rows`` whose pair
    is missing (or used up by an earlier row with the same pair) was a duplicate.
    """
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(_CREATE)
        with cursor.copy(_COPY) as copy:
            for position, row in enumerate(rows):
                copy.write_row([_value(name, row[name]) for name in COLUMNS] + [position])
        cursor.execute(_MOVE)
        return Counter((key, recipient_row) for key, recipient_row in cursor.fetchall())


def _value(name: str, value: Any) -> Any:
    if name in JSON_COLUMNS and value is not None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value
