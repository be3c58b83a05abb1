"""Deliveries in bulk, and the hot statements bound for the driver directly.

SQLite. SQLAlchemy's Core ``insert`` with a list of rows is one ``executemany`` too, but it
processes every row's parameters through the compiled statement (a dict per row, a bind
processor call per value): for a fan-out of a million deliveries that is most of the time spent
writing them. :func:`insert_many` looks each column's converter up once per batch and hands the
driver plain tuples. Values are stored exactly as SQLAlchemy would store them (the ledger's
tests read them back through the ORM); a batch this path does not cover goes through SQLAlchemy
unchanged.

PostgreSQL. :func:`copy_deliveries` streams a batch with a binary ``COPY`` straight into
``deliveries`` under a savepoint. When a row conflicts (its (incident, step, recipient) exists
already, or repeats an earlier row of the batch), the savepoint undoes that, and the batch goes
into a temporary table of the connection instead, then into ``deliveries`` with one ``INSERT ...
SELECT ... ON CONFLICT DO NOTHING RETURNING``: the caller learns which rows were left out by
what came back.

Claims and settlements. :func:`execute_many` (a settle's per-row updates), :func:`fetch_all` (a
claim's ``UPDATE ... RETURNING``) and :func:`select_in` (a settle's reads by key) run statements
compiled once, with parameters converted by their types' processors and handed to the driver as
it takes them; the rows come back as the driver's own, converted column by column where a type
needs it. Both databases; anything these do not cover goes through SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Dialect,
    Integer,
    LargeBinary,
    Select,
    Table,
    insert,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import UpdateBase

from .models import Delivery, UTCDateTime

__all__ = [
    "copy_deliveries",
    "execute_in",
    "execute_many",
    "execute_one",
    "fetch_all",
    "insert_many",
    "select_in",
    "sqlite_datetime",
]

Convert = Callable[[Any], Any] | None


def sqlite_datetime(value: datetime | None) -> str | None:
    """An aware datetime as SQLAlchemy's SQLite dialect stores a :class:`UTCDateTime`."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    if value.utcoffset():
        value = value.astimezone(UTC)
    text = value.replace(tzinfo=None).isoformat(" ")
    # SQLAlchemy always writes six digits of microseconds; isoformat drops them when zero
    return text if value.microsecond else text + ".000000"


def _last_datetime() -> Callable[[Any], Any]:
    """:func:`sqlite_datetime` that remembers its last value, converted once when it comes
    again (``insert_many`` answers None without asking it, so a row's empty stamps between its
    set ones do not make it forget)."""
    return _identical(sqlite_datetime)


def _identical(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` remembering its last answer for the same object (the stamp a batch shares)."""
    last: list[Any] = [object(), None]

    def once(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, convert(value)
        return last[1]

    return once


def _none_once(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, with its answer for None (JSON's ``null``, a NULL stamp) worked out once:
    most of a fan-out's optional columns are empty."""
    empty = convert(None)

    def once(value: Any) -> Any:
        return empty if value is None else convert(value)

    return once


def insert_many(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column values, every row the same keys) in one statement.

    Raises SQLAlchemy's ``IntegrityError`` on a duplicate key, as ``connection.execute`` does.
    """
    if not rows:
        return
    keys = list(rows[0])
    columns = [table.c[k] for k in keys if k in table.c]
    uniform = len(columns) == len(keys) and all(len(r) == len(keys) for r in rows)
    # a column left out would take its Python-side default, which only SQLAlchemy applies
    defaulted = any(c.default is not None and c.key not in rows[0] for c in table.c)
    if connection.dialect.name != "sqlite" or not uniform or defaulted:
        connection.execute(insert(table), list(rows))
        return
    stamp = _last_datetime()  # shared by the datetime columns: a row's stamps are one object
    convert: list[Convert] = [
        stamp
        if isinstance(c.type, UTCDateTime)
        else c.type._cached_bind_processor(connection.dialect)
        for c in columns
    ]
    params = _tuples(rows, _picker(keys), convert)
    quote = connection.dialect.identifier_preparer
    names = ", ".join(quote.format_column(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({marks})"
    connection.exec_driver_sql(sql, params)


def execute_many(connection: Connection, statement: UpdateBase, rows: list[dict[str, Any]]) -> int:
    """``connection.execute(statement, rows).rowcount``, each row a dict of the statement's bound
    parameters, every row the same keys.

    The driver gets each row's parameters converted by their types' processors (a stamp the
    rows share, once): plain tuples on SQLite, dicts on PostgreSQL, for a statement compiled
    once; SQLAlchemy would build every row's parameters through the compiled statement.
    Elsewhere, SQLAlchemy.
    """
    bound = _bound(connection, statement, rows) if len(rows) > 1 else None
    if bound is None:
        return int(connection.execute(statement, rows).rowcount)
    sql, params = bound
    return int(connection.exec_driver_sql(sql, params).rowcount)


def execute_one(connection: Connection, statement: UpdateBase, params: Mapping[str, Any]) -> int:
    """``connection.execute(statement, params).rowcount``, the parameters bound as
    :func:`execute_many` binds a row's: for a statement run once per item of a batch."""
    bound = _bound(connection, statement, [params])
    if bound is None:
        return int(connection.execute(statement, params).rowcount)
    sql, rows = bound
    return _driver_count(connection, sql, rows[0])


def fetch_all(
    connection: Connection, statement: UpdateBase, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows ``statement`` (with RETURNING) gives for ``params``, as dicts of its returned
    columns: what ``connection.execute(statement, params)`` gives, row by row.

    The driver's tuples (SQLite, PostgreSQL) are converted column by column, a value that
    comes again (the lease every claimed row shares, JSON's ``null``) converted once; SQLAlchemy
    would fetch and process each row on its own (a claim of 50,000 rows: 6 µs a row).
    Elsewhere, SQLAlchemy.
    """
    returned = [c for c in statement._returning if isinstance(c, Column)]
    bound = _bound(connection, statement, [params])
    if bound is None or len(returned) != len(statement._returning):
        result = connection.execute(statement, params)
        names = list(result.keys())
        return [dict(zip(names, row, strict=True)) for row in result]
    sql, (values,) = bound
    raw = _driver_rows(connection, sql, values)
    dialect = connection.dialect
    keys: list[str] = [c.key for c in returned]
    readers = [_reader(c.type._cached_result_processor(dialect, None)) for c in returned]
    if any(readers) and raw:
        # column by column: only the few columns with a processor are touched again
        columns = list(zip(*raw, strict=True))
        for i, read in enumerate(readers):
            if read is not None:
                columns[i] = tuple(map(read, columns[i]))
        raw = list(zip(*columns, strict=True))
    return [dict(zip(keys, row, strict=True)) for row in raw]


def select_in(
    connection: Connection,
    statement: Select[Any] | UpdateBase,
    name: str,
    values: Sequence[Any],
    params: Mapping[str, Any],
) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` (a SELECT, or an UPDATE ... RETURNING) for ``params``, whose
    expanding ``IN`` parameter ``name`` takes ``values``, as tuples: what
    ``connection.execute(statement, {name: values, **params})`` gives, row by row.

    SQLAlchemy would expand the list into one parameter per value, in SQL text that changes with
    the list's length, and fetch and process each row on its own, every call. Here the statement
    is compiled once, and the driver's tuples come back as they are (when no column needs
    converting): on SQLite the list is written as that many placeholders, on PostgreSQL it is
    one array (``= ANY(...)``), so the SQL text stays the same. Otherwise, SQLAlchemy.
    """
    dialect = connection.dialect
    readers = [c.type._cached_result_processor(dialect, None)
               for c in statement.exported_columns]  # fmt: skip
    bound = None if any(readers) else _bound_in(connection, statement, name, values, params)
    if bound is None:
        found = connection.execute(statement, {name: list(values), **params})
        return [tuple(row) for row in found]
    return _driver_rows(connection, *bound)


def execute_in(
    connection: Connection,
    statement: UpdateBase,
    name: str,
    values: Sequence[Any],
    params: Mapping[str, Any],
) -> int:
    """Run ``statement`` (an UPDATE) for ``params``, its expanding ``IN`` parameter ``name``
    taking ``values`` as :func:`select_in` passes them; the rows it changed.

    On PostgreSQL this is more than speed: psycopg prepares a statement run five times, and the
    generic plan of ``key IN ($1, ..., $1000)`` tests every row of the table against the whole
    list (no hashing without constants): 1.1 s for 1,000 rows of a 100,000-row table, where
    ``key = ANY($1)`` reads the key index.
    """
    bound = _bound_in(connection, statement, name, values, params)
    if bound is None:
        return int(connection.execute(statement, {name: list(values), **params}).rowcount)
    return _driver_count(connection, *bound)


def _bound_in(
    connection: Connection,
    statement: UpdateBase | Select[Any],
    name: str,
    values: Sequence[Any],
    params: Mapping[str, Any],
) -> tuple[str, list[Any] | dict[str, Any]] | None:
    """The SQL and driver parameters of ``statement`` with ``values`` in its expanding ``IN``
    parameter ``name`` (see :func:`select_in`); None where SQLAlchemy must bind them."""
    dialect = connection.dialect
    if not values or dialect.name not in ("sqlite", "postgresql"):
        return None
    compiled = _compiled(statement, dialect)
    marker = f"__[POSTCOMPILE_{name}]"
    if dialect.name == "postgresql":
        sql = compiled.sql.replace(f"IN ({marker})", f"= ANY(%({name})s)", 1)
        given = {each: compiled.value(each, params) for each in compiled.named if each != name}
        return sql, {**given, name: list(values)}
    sql = compiled.sql.replace(marker, ", ".join("?" * len(values)), 1)
    args: list[Any] = []
    for each in compiled.order:
        if each == name:
            args += values
        else:
            args.append(compiled.value(each, params))
    return sql, args


#: a parameter the caller gives (not one the statement fixes)
_GIVEN = object()
_STAMP: Convert = sqlite_datetime  # on SQLite, stands for a fresh _last_datetime() per column


class _Compiled(NamedTuple):
    """A statement compiled once for a dialect, and what binding its parameters needs."""

    sql: str
    #: the parameters in the order a positional driver (SQLite) takes them; empty for psycopg
    order: list[str]
    #: parameter -> the value the statement fixes (``_GIVEN``: the caller's), its converter
    named: dict[str, tuple[Any, Convert]]
    #: the parameters the caller gives
    given: frozenset[str]

    def value(self, name: str, params: Mapping[str, Any]) -> Any:
        """``name``'s value as the driver takes it: fixed or from ``params``, converted."""
        value, convert = self.named[name]
        value = params[name] if value is _GIVEN else value
        return value if convert is None else convert(value)


@functools.cache
def _compiled(statement: UpdateBase | Select[Any], dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    sqlite = dialect.name == "sqlite"
    named: dict[str, tuple[Any, Convert]] = {
        each: (_GIVEN if bind.required else bind.value,
               _STAMP if sqlite and isinstance(bind.type, UTCDateTime)
               else bind.type._cached_bind_processor(dialect))
        for each, bind in compiled.binds.items()
    }  # fmt: skip
    given = frozenset(each for each, (value, _) in named.items() if value is _GIVEN)
    return _Compiled(compiled.string, list(compiled.positiontup or []), named, given)


def _driver_rows(
    connection: Connection, sql: str, args: Sequence[Any] | Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """``sql``'s rows straight from the driver's cursor."""
    with _driver_cursor(connection, sql, args) as cursor:
        return cast(list[tuple[Any, ...]], cursor.fetchall())


def _driver_count(connection: Connection, sql: str, args: Sequence[Any] | Mapping[str, Any]) -> int:
    """The rows ``sql`` changed, run on the driver's cursor."""
    with _driver_cursor(connection, sql, args) as cursor:
        return int(cursor.rowcount)


@contextmanager
def _driver_cursor(
    connection: Connection, sql: str, args: Sequence[Any] | Mapping[str, Any]
) -> Iterator[Any]:
    """The driver's cursor, ``sql`` executed on it; its errors raised as SQLAlchemy's (what the
    ledger turns into a :class:`~orchestrator.errors.LedgerError`)."""
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor.execute(sql, args)
    except dbapi.Error as error:
        raise DBAPIError.instance(sql, args, error, dbapi.Error) from error
    finally:
        cursor.close()


def _bound(
    connection: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, list[tuple[Any, ...]] | list[dict[str, Any]]] | None:
    """``statement``'s SQL (compiled once) and each row's parameters as the driver takes them,
    converted by their types' processors (a stamp the rows share, once): tuples on SQLite,
    dicts on PostgreSQL. A row may name more than the statement takes (one parameter set for
    several shapes of a statement); None where SQLAlchemy must bind them (another database, or
    rows that do not name every parameter)."""
    dialect = connection.dialect
    if dialect.name not in ("sqlite", "postgresql"):
        return None
    compiled = _compiled(statement, dialect)
    if not compiled.given <= rows[0].keys():
        return None
    # the values the statement fixes itself (``state = 'sending'``) join each row's
    fixed = {each: value for each, (value, _) in compiled.named.items() if value is not _GIVEN}
    full = [{**row, **fixed} for row in rows]
    if dialect.name == "postgresql":  # psycopg takes named parameters
        convert = [(each, _identical(f)) for each, (_, f) in compiled.named.items()
                   if each in compiled.given and f]  # fmt: skip
        for one in full:
            for each, f in convert:
                one[each] = f(one[each])
        return compiled.sql, full
    # a stamp per column: a settle's rows share the write's moment but not their send times,
    # and one memory for both would forget each on every row
    processors = [compiled.named[each][1] for each in compiled.order]
    stamps = [_last_datetime() if f is _STAMP else f for f in processors]
    return compiled.sql, _tuples(full, _picker(compiled.order), stamps)


def _reader(process: Convert) -> Convert:
    """``process`` (a column's result processor) remembering its last answer while that answer
    is immutable: a column whose rows repeat one value converts it once."""
    if process is None:
        return None
    last: list[Any] = [object(), None]

    def read(value: Any) -> Any:
        if value is None:
            return None
        if value == last[0]:
            return last[1]
        answer = process(value)
        if answer is None or isinstance(answer, (str, int, float, datetime)):
            last[0], last[1] = value, answer
        return answer

    return read


def _picker(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A row's values for ``names``, in order, as a tuple (one C call)."""
    if len(names) == 1:
        return lambda row: (row[names[0]],)
    return itemgetter(*names)


def _tuples(
    rows: Sequence[Mapping[str, Any]],
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]],
    convert: Sequence[Convert],
) -> list[tuple[Any, ...]]:
    """Each row as the driver takes it: its values picked in one call, then only the few with a
    converter touched again (a converter's answer for None worked out once)."""
    converted = [(i, _none_once(f)) for i, f in enumerate(convert) if f is not None]
    if not converted:
        return [pick(row) for row in rows]
    params = []
    for row in rows:
        one = list(pick(row))
        for i, f in converted:
            one[i] = f(one[i])
        params.append(tuple(one))
    return params


DELIVERIES = cast(Table, Delivery.__table__)
#: every column a fan-out writes (the id comes from the table's sequence)
COLUMNS = tuple(c.name for c in DELIVERIES.columns if c.name != "id")
#: positions in COLUMNS of the JSON columns, which COPY takes as text
_JSON_AT = tuple(i for i, name in enumerate(COLUMNS) if isinstance(DELIVERIES.c[name].type, JSON))
LOAD = "breach_delivery_load"
_names = ", ".join(COLUMNS)
# Per connection, emptied at every commit; its columns copy the table's at first use.
_CREATE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {LOAD} ON COMMIT DELETE ROWS AS "
    f"SELECT {_names}, 0::bigint AS load_pos FROM deliveries WITH NO DATA"
)
_COPY = f"COPY {LOAD} ({_names}, load_pos) FROM STDIN"
# Binary: psycopg writes each value in C (a fan-out's client spends a fifth less time a row than
# with text, which formats stamps and numbers as strings first).
_COPY_IN = f"COPY deliveries ({_names}) FROM STDIN (FORMAT BINARY)"


def _copy_type(column: Column[Any]) -> str:
    """The type whose binary dumper writes ``column`` in a binary COPY. Text, varchar and json
    take the same bytes (json as the text ``_copy_values`` made of it: a json dumper would
    encode that text once more)."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, LargeBinary):
        return "bytea"
    return "text"


_COPY_TYPES = [_copy_type(DELIVERIES.c[name]) for name in COLUMNS]
#: PostgreSQL's SQLSTATE for a duplicate key
_UNIQUE_VIOLATION = "23505"
_MOVE = (
    f"INSERT INTO deliveries ({_names}) SELECT {_names} FROM {LOAD} ORDER BY load_pos "
    "ON CONFLICT DO NOTHING RETURNING key, recipient_row"
)


def copy_deliveries(connection: Connection, rows: Sequence[dict[str, Any]]) -> Counter[Any]:
    """COPY ``rows`` (full Delivery column dicts) in, inside the caller's transaction.

    Returns how many rows were inserted per (key, recipient row): a row of ``rows`` whose pair
    is missing (or used up by an earlier row with the same pair) was a duplicate. The driver's
    errors are raised as SQLAlchemy's (what the ledger turns into a LedgerError).
    """
    dbapi = connection.dialect.loaded_dbapi
    try:
        return _copy(connection, rows)
    except dbapi.Error as error:
        raise DBAPIError.instance(_COPY_IN, None, error, dbapi.Error) from error


def _copy(connection: Connection, rows: Sequence[dict[str, Any]]) -> Counter[Any]:
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        # A fan-out's batch rarely repeats a row already written (an audience listing a person
        # twice): COPY it straight into the table, under a savepoint, which a conflict undoes.
        try:
            with raw.transaction(), cursor.copy(_COPY_IN) as copy:
                copy.set_types(_COPY_TYPES)
                for values in _copy_values(rows, with_position=False):
                    copy.write_row(values)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
        else:
            return Counter((row["key"], row["recipient_row"]) for row in rows)
        # Then through a temporary table, whose move skips each row that conflicts.
        cursor.execute(_CREATE)
        with cursor.copy(_COPY) as copy:
            for values in _copy_values(rows, with_position=True):
                copy.write_row(values)
        cursor.execute(_MOVE)
        return Counter((key, recipient_row) for key, recipient_row in cursor.fetchall())


def _copy_values(rows: Sequence[dict[str, Any]], *, with_position: bool) -> Iterator[list[Any]]:
    """Each row's COPY values in :data:`COLUMNS` order (JSON as text), then its position."""
    for position, row in enumerate(rows):
        values = [row[name] for name in COLUMNS]
        for i in _JSON_AT:
            if values[i] is not None:
                values[i] = json.dumps(values[i], ensure_ascii=False, separators=(",", ":"))
        if with_position:
            values.append(position)
        yield values
