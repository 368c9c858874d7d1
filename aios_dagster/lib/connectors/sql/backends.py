"""Per-engine database access: Postgres (ADBC libpq), SQLite (ADBC) and DuckDB.

Each backend knows how to connect read-only, run one query to Arrow, bind a cursor value so it
compares as the column's own type, and tell a transient driver error from a permanent one, so
the reader and its session stay engine-agnostic.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
import pyarrow as pa

from aios_dagster.lib.connectors.source import PermanentSourceError
from aios_dagster.lib.connectors.sql.config import SqlSourceConfig, _quote, redact_dsn

_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ (),]*$")
"""Server-reported type names are inlined into CAST(...): checked too, not trusted blindly."""

# Postgres SQLSTATEs worth retrying: connection exceptions (08), insufficient resources (53),
# operator intervention (57P01-3 shutdown, 57014 cancelled/statement timeout), lock and
# serialization failures.
_PG_TRANSIENT_STATES = ("08", "53", "57P", "57014", "40001", "40P01", "55P03")
# A connection the server refused with FATAL is permanent (unknown database or role, failed
# authentication, a bad ``options`` parameter), except for these states of the server itself.
_PG_TRANSIENT_FATAL = (
    "starting up",
    "shutting down",
    "in recovery",
    "recovery mode",
    "too many clients",
    "administrator command",
    "remaining connection slots",
)


@dataclass(frozen=True)
class _KeyTypes:
    """How to bind cursor values so they compare as the column's own type."""

    watermark: str | None  # SQL type name for CAST (postgres/duckdb) or SQLite storage class
    id: str | None


class _Failure(Exception):
    """A driver error classified as transient or permanent (carries the scrubbed message)."""

    def __init__(self, transient: bool, message: str) -> None:
        super().__init__(message)
        self.transient = transient


class _Backend:
    """The per-engine parts: connecting, running one query to Arrow, binding, error kinds."""

    def __init__(self, config: SqlSourceConfig, scrub: Callable[[str], str]) -> None:
        self.config = config
        self.scrub = scrub

    def connect(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def query(self, conn: Any, sql: str, params: list[Any]) -> pa.Table:  # pragma: no cover
        raise NotImplementedError

    def classify(self, exc: BaseException) -> _Failure | None:  # pragma: no cover
        raise NotImplementedError

    def placeholder(self, index: int, type_name: str | None) -> str:
        return f"CAST(${index} AS {type_name})" if type_name else f"${index}"

    def bind(self, value: Any, type_name: str | None) -> Any:
        """Postgres and DuckDB: the text form, cast in SQL to the column type (exact)."""
        return str(value)

    def key_types(self, conn: Any, probe: pa.Table, source_sql: str) -> _KeyTypes:
        raise NotImplementedError  # pragma: no cover

    @staticmethod
    def close(conn: Any) -> None:
        with contextlib.suppress(Exception):  # best effort: it may already be broken
            conn.close()


class _PostgresBackend(_Backend):
    """ADBC libpq driver in autocommit: each batch query is its own short snapshot."""

    def connect(self) -> Any:
        import adbc_driver_postgresql.dbapi as pg

        parts = urlsplit(self.config.dsn)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "connect_timeout"]
        # libpq takes whole seconds (and treats anything under 2 as 2).
        query.append(("connect_timeout", str(max(2, math.ceil(self.config.connect_timeout_s)))))
        # quote, not quote_plus: libpq does not read '+' as a space (options=-c%20x%3Dy).
        params = urlencode(query, quote_via=quote)
        uri = urlunsplit(("postgresql", parts.netloc, parts.path, params, parts.fragment))
        return pg.connect(uri, autocommit=True)

    def query(self, conn: Any, sql: str, params: list[Any]) -> pa.Table:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            return _plain_types(cur.fetch_arrow_table())

    def classify(self, exc: BaseException) -> _Failure | None:
        if not isinstance(exc, adbc_driver_manager.Error):
            return None
        message = self.scrub(str(exc))
        state = getattr(exc, "sqlstate", None) or ""
        if state:
            return _Failure(state.startswith(_PG_TRANSIENT_STATES), message)
        if "Failed to connect" in message:
            # No FATAL: nobody answered (refused, timed out, unresolvable): maybe next time.
            lowered = message.lower()
            refused = "fatal:" in lowered
            return _Failure(not refused or any(m in lowered for m in _PG_TRANSIENT_FATAL), message)
        # No SQLSTATE: the connection broke mid-query (server restart, network): retry.
        return _Failure(isinstance(exc, adbc_driver_manager.OperationalError), message)

    def key_types(self, conn: Any, probe: pa.Table, source_sql: str) -> _KeyTypes:
        def pg_type(column: str) -> str:
            meta = probe.schema.field(column).metadata or {}
            name = meta.get(b"POSTGRESQL:type", b"").decode()
            if not _TYPE_NAME.fullmatch(name):
                raise PermanentSourceError(
                    redact_dsn(self.config.dsn),
                    f"column {column}",
                    f"cannot tell the Postgres type of key column {column!r} ({name!r})",
                )
            return name

        return _KeyTypes(pg_type(self.config.watermark_column), pg_type(self.config.id_column))


class _SqliteBackend(_Backend):
    """ADBC SQLite driver on a ``mode=ro`` URI: the source database is never written.

    SQLite is dynamically typed and has no timestamp type: watermarks are usually ISO-8601
    text (compared as text, so they must share one format and offset) or epoch numbers. The
    cursor keeps the watermark's JSON type (str/int/float) and binds it as such; the id, kept
    as a string, is converted to the storage class its column actually holds, because SQLite
    orders every integer before every text value, so an integer id compared with the text
    '42' would silently match nothing.
    """

    def connect(self) -> Any:
        import adbc_driver_sqlite.dbapi as sqlite

        uri = f"{self.config.file_path.as_uri()}?mode=ro"
        conn = sqlite.connect(uri, autocommit=True)
        with conn.cursor() as cur:
            # A writer holding the lock makes us wait this long before "database is locked".
            cur.execute(f"PRAGMA busy_timeout = {int(self.config.connect_timeout_s * 1000)}")
        return conn

    def __init__(self, config: SqlSourceConfig, scrub: Callable[[str], str]) -> None:
        super().__init__(config, scrub)
        self.declared: dict[str, pa.DataType] = {}

    def query(self, conn: Any, sql: str, params: list[Any]) -> pa.Table:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            table = cur.fetch_arrow_table()
        # The driver infers each batch's types from its values, so a column that is all NULL
        # in one batch comes back int64 and string in the next: lake parts would disagree.
        # Such columns take the type the table declares (affinity) instead.
        for i, field in enumerate(table.schema):
            target = self.declared.get(field.name)
            if (
                target is not None
                and field.type != target
                and table.column(i).null_count == (table.num_rows)
            ):
                table = table.set_column(
                    i, pa.field(field.name, target), pa.nulls(table.num_rows, target)
                )
        return table

    def placeholder(self, index: int, type_name: str | None) -> str:
        return f"?{index}"

    def _declared_types(self, conn: Any) -> dict[str, pa.DataType]:
        """Arrow types for the table's declared column types, by SQLite's affinity rules."""
        if not self.config.table:
            return {}  # a query's columns have no declared type
        *schema, name = self.config.table.split(".")
        rows = self.query(
            conn,
            "SELECT name, upper(type) AS type FROM pragma_table_info(?1, ?2)",
            [name, schema[-1] if schema else "main"],
        ).to_pylist()
        types: dict[str, pa.DataType] = {}
        for row in rows:
            decl = row["type"] or ""
            if "INT" in decl:
                types[row["name"]] = pa.int64()
            elif any(t in decl for t in ("CHAR", "CLOB", "TEXT")):
                types[row["name"]] = pa.string()
            elif any(t in decl for t in ("REAL", "FLOA", "DOUB")):
                types[row["name"]] = pa.float64()
        return types

    def bind(self, value: Any, type_name: str | None) -> Any:
        if type_name == "integer":
            return int(value)
        if type_name == "real":
            return float(value)
        if type_name is None and isinstance(value, int | float):
            return value  # a numeric watermark keeps its JSON type
        return str(value)

    def key_types(self, conn: Any, probe: pa.Table, source_sql: str) -> _KeyTypes:
        wm = _quote(self.config.watermark_column)
        key = _quote(self.config.id_column)
        sql = (
            f"SELECT typeof({key}) AS t FROM {source_sql} "
            f"WHERE {wm} IS NOT NULL AND {key} IS NOT NULL LIMIT 1"
        )
        found = self.query(conn, sql, []).column("t").to_pylist()
        self.declared = self._declared_types(conn)
        # The watermark binds with its own JSON type (None here); the id needs a storage class.
        return _KeyTypes(None, found[0] if found else None)

    def classify(self, exc: BaseException) -> _Failure | None:
        if not isinstance(exc, adbc_driver_manager.Error):
            return None
        message = self.scrub(str(exc))
        lowered = message.lower()
        return _Failure("locked" in lowered or "busy" in lowered, message)


class _DuckdbBackend(_Backend):
    """DuckDB opened ``read_only``: shares the file with other readers, never writes it."""

    def connect(self) -> Any:
        import duckdb

        return duckdb.connect(str(self.config.file_path), read_only=True)

    def query(self, conn: Any, sql: str, params: list[Any]) -> pa.Table:
        # con.sql(...).to_arrow_table(): the DB-API execute() path copies rows once more.
        return conn.sql(sql, params=params or None).to_arrow_table()

    def key_types(self, conn: Any, probe: pa.Table, source_sql: str) -> _KeyTypes:
        wm = _quote(self.config.watermark_column)
        key = _quote(self.config.id_column)
        rel = conn.sql(f"SELECT {wm}, {key} FROM {source_sql} LIMIT 0")
        names = [str(t) for t in rel.types]
        keys = (self.config.watermark_column, self.config.id_column)
        for column, name in zip(keys, names, strict=True):
            if not _TYPE_NAME.fullmatch(name):
                raise PermanentSourceError(
                    redact_dsn(self.config.dsn),
                    f"column {column}",
                    f"key column type {name!r} cannot be used as a keyset position",
                )
        return _KeyTypes(names[0], names[1])

    def classify(self, exc: BaseException) -> _Failure | None:
        import duckdb

        if not isinstance(exc, duckdb.Error):
            return None
        message = self.scrub(str(exc))
        # Another process holds the write lock on the file: it will let go.
        return _Failure(isinstance(exc, duckdb.IOException) and "lock" in message, message)


_BACKENDS: dict[str, type[_Backend]] = {
    "postgres": _PostgresBackend,
    "sqlite": _SqliteBackend,
    "duckdb": _DuckdbBackend,
}


def _plain_types(table: pa.Table) -> pa.Table:
    """Unwrap the driver's extension types into plain ones every consumer understands.

    ``arrow.opaque`` (Postgres numeric and types the driver cannot map) becomes its lossless
    text storage; ``arrow.uuid`` becomes canonical text (pandas would turn it into 16 raw
    bytes, useless as a record id, and DuckDB already returns uuids as text).
    """
    for i, field in enumerate(table.schema):
        column = table.column(i)
        if isinstance(field.type, pa.OpaqueType):
            plain = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], field.type.storage_type
            )
        elif isinstance(field.type, pa.UuidType):
            plain = pa.chunked_array(
                [pa.array([None if u is None else str(u) for u in column.to_pylist()], pa.string())]
            )
        else:
            continue
        table = table.set_column(
            i, pa.field(field.name, plain.type, field.nullable, field.metadata), plain
        )
    return table
