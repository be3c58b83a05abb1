"""SQL audiences: ``--audience sql:URL`` (any SQLAlchemy URL) with a query.

Options: ``query`` (required) is a SELECT whose result columns are named like a CSV header
(``id`` required; ``name``, ``email``, ``phone``, ``push_token``, ``locale``, ``region``; any other
column becomes an attr with the database's type). ``params`` are bound to the query's
``:name`` placeholders by the driver, never pasted into its text, so a value from an alert or
a command line cannot change the query. ``batch_size`` sets how many rows are fetched at a time.

Rows stream through a server-side cursor where the driver has one, and each iteration runs the
query afresh in its own connection. Every connection is opened read-only (SQLite's
``query_only``, PostgreSQL's and MySQL's read-only transactions), so a query that writes, even
DDL that SQLite would otherwise commit at once, fails and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..audience import ColumnMap, Recipient, check_options, map_columns
from ..contacts import build_recipient
from ..errors import AudienceError

OPTIONS = {
    "query": "SELECT returning an id column and contact columns; required",
    "params": "values for the query's :name placeholders",
    "batch_size": "rows fetched per round trip; default 2000",
}
DEFAULT_BATCH = 2000


class SqlSource:
    """The result of one parametrised query, streamed afresh on every iteration."""

    def __init__(
        self,
        url: str,
        query: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        parsed = _parse_url(url)
        self.description = f"SQL query on {parsed.render_as_string(hide_password=True)}"
        self.query = text(query)
        self.params = dict(params or {})
        self.batch_size = batch_size
        try:
            self.engine: Engine = create_engine(parsed)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise AudienceError(f"{self.description}: cannot connect: {exc}") from None
        event.listen(self.engine, "connect", _read_only(self.engine.dialect.name))
        # Run the query once now, reading only its column names: a typo in the query or a
        # missing id column should fail when the step is planned, not when it fires.
        with self._connect() as conn:
            result = self._execute(conn)
            self._map(result)
            result.close()

    def __iter__(self) -> Iterator[Recipient]:
        with self._connect() as conn:
            result = self._execute(conn)
            columns = self._map(result)
            try:
                yield from _read(result, columns)
            except SQLAlchemyError as exc:
                raise self._error("reading the result failed", exc) from None

    def close(self) -> None:
        """Release pooled connections; a later iteration opens a new one."""
        self.engine.dispose()

    def _connect(self) -> Connection:
        """A connection for one run of the query (read-only, see :func:`_read_only`)."""
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise self._error("cannot connect", exc) from None

    def _execute(self, conn: Connection) -> CursorResult[Any]:
        try:
            return conn.execution_options(stream_results=True, yield_per=self.batch_size).execute(
                self.query, self.params
            )
        except SQLAlchemyError as exc:
            raise self._error("the query failed", exc) from None

    def _map(self, result: CursorResult[Any]) -> ColumnMap:
        if not result.returns_rows:
            raise AudienceError(f"{self.description}: the query returns no rows; use a SELECT")
        return map_columns(result.keys(), self.description)

    def _error(self, what: str, exc: SQLAlchemyError) -> AudienceError:
        # The driver's own message: SQLAlchemy's str(exc) would echo the bound parameters.
        orig = getattr(exc, "orig", None)
        detail = str(orig) if orig is not None else str(exc.args[0] if exc.args else exc)
        detail = detail.split("(Background on this error", 1)[0].strip()
        return AudienceError(f"{self.description}: {what}: {detail}")


def _read(result: CursorResult[Any], columns: ColumnMap) -> Iterator[Recipient]:
    i_id, i_name, i_email, i_phone, i_push, i_locale, i_region = columns.positions
    attr_columns = columns.attrs
    for row, values in enumerate(result, 1):
        yield build_recipient(
            row,
            id=values[i_id],
            name=values[i_name] if i_name >= 0 else None,
            email=values[i_email] if i_email >= 0 else None,
            phone=values[i_phone] if i_phone >= 0 else None,
            push_token=values[i_push] if i_push >= 0 else None,
            locale=values[i_locale] if i_locale >= 0 else None,
            region=values[i_region] if i_region >= 0 else None,
            attrs={name: values[index] for name, index in attr_columns},
        )


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise AudienceError(
            "sql audience: the target is not a database URL; write e.g. sql:sqlite:///people.db "
            "or sql:postgresql+psycopg://user@host/db"
        ) from None
    database = parsed.database
    # SQLite would silently create an empty database for a misspelt file name.
    if (
        parsed.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_file()
    ):
        raise AudienceError(f"sql audience: SQLite database file {database} does not exist")
    return parsed


def open_sql(target: str, options: Mapping[str, Any]) -> SqlSource:
    """Factory for ``sql:URL``; options: ``query`` (required), ``params``, ``batch_size``."""
    check_options(options, OPTIONS, "sql")
    query = options.get("query")
    if not isinstance(query, str) or not query.strip():
        raise AudienceError(
            "sql audience source needs a query option: a SELECT returning at least an id column"
        )
    params = options.get("params", {})
    if not isinstance(params, Mapping):
        raise AudienceError("sql audience source: params must be a mapping of name to value")
    batch_size = options.get("batch_size", DEFAULT_BATCH)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise AudienceError("sql audience source: batch_size must be a positive whole number")
    return SqlSource(target, query, params, batch_size=batch_size)


_READ_ONLY = {
    "sqlite": "PRAGMA query_only = ON",
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


def _read_only(dialect: str) -> Any:
    """A connect hook that makes every new connection of ``dialect`` read-only."""
    statement = _READ_ONLY.get(dialect)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if statement is None:
            return  # an unknown database: only the rollback protects it
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    return on_connect
