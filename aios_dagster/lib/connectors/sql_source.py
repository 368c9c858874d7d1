"""The ``sql`` connector kind: incremental extraction of a table or query in Arrow batches.

Progress is a keyset position on ``(watermark, id)``: every batch is one independent query

    SELECT ... FROM src
    WHERE wm IS NOT NULL AND id IS NOT NULL
      AND wm >= :w AND (wm > :w OR id > :id)       -- omitted on the first run
    ORDER BY wm, id
    LIMIT :batch_rows

and the cursor after a batch is the ``(watermark, id)`` of its last row. Why this shape:

* **No skips, no duplicates at batch boundaries.** Ordering by the watermark alone would split a
  group of rows sharing one ``updated_at`` and either re-read or (worse) skip part of it; the id
  makes the order total, so "strictly after the last row" is exact.
  ``wm >= :w AND (wm > :w OR id > :id)`` is the portable spelling of ``(wm, id) > (:w, :id)``:
  the leading ``wm >= :w`` lets every engine seek an index on ``(wm, id)``.
* **Bounded memory and restartable batches.** A ``LIMIT`` per query caps what any batch holds at
  ``batch_rows`` rows, whatever the driver does internally, and there is no long-lived server
  cursor or transaction to lose: a crash after batch *k* is resumed from batch *k*'s cursor with
  the same query the original run would have issued, so the re-read batch gets the same
  ``batch_id`` and rewrites its lake part instead of duplicating it. Streaming one big query with
  ``fetch_record_batch`` would also be bounded, but it pins a snapshot (and on Postgres a
  transaction) for the whole run while the runtime writes Parquet between batches, and a restart
  could not reproduce the batch boundaries. The price is one query per batch; with an index on
  ``(watermark, id)`` each is a range scan (without one, each is a top-N sort of the table).
* **Updates are picked up again.** A row whose watermark moves forward sorts after the cursor and
  is read by the next run; dedup by record id downstream keeps the latest version.

Known limit of any watermark scheme (documented, not solved here): a row whose watermark is set
at transaction start and which commits after a later-stamped row was already read is missed.
Rows whose watermark or id is NULL have no position in the order and are not read until they
get one.

Values never reach SQL text: cursor values are bound parameters, cast in SQL to the column's own
type (Postgres and DuckDB report it), and identifiers from the config are checked against a
strict regex and double-quoted, so a table or column name cannot carry SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit
from uuid import UUID

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    SourceBatch,
    SourceError,
    TransientSourceError,
)
from aios_dagster.lib.retry import RetryPolicy, RetryStats, call_with_retry

T = TypeVar("T")

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
"""Plain SQL identifiers only: no quotes, spaces, dots or semicolons can get into SQL text."""

_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ (),]*$")
"""Server-reported type names are inlined into CAST(...): checked too, not trusted blindly."""

_SECRET_PARAMS = {"password", "sslpassword", "passfile"}
_FILE_SCHEMES = {"sqlite", "duckdb"}
_PG_SCHEMES = {"postgresql", "postgres"}

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
_PERMANENT = "the server rejected the connection or the SQL, so asking again cannot succeed"


def _check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain SQL identifier (letters, digits, underscore; "
            "not starting with a digit; at most 63 characters)"
        )
    return value


def _quote(name: str) -> str:
    """Double-quote an identifier already checked by ``IDENTIFIER`` (so it has no quotes)."""
    return f'"{name}"'


def redact_dsn(dsn: str) -> str:
    """The DSN with the password (in userinfo or query) replaced by ``***``."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = urlencode(
        [
            (k, "***" if k.lower() in _SECRET_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    if not netloc and parts.scheme.lower() in _FILE_SCHEMES:
        # urlunsplit would write sqlite:/path: keep the form the config was written in.
        return f"{parts.scheme}://{parts.path}" + (f"?{query}" if query else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class SqlSourceConfig(BaseModel):
    """One incrementally extracted table (or query) of a SQL database."""

    # hide_input_in_errors: a rejected dsn must not be echoed (with its password) in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str = Field(
        description=(
            "postgresql://user[:password]@host:port/db, sqlite:///abs/path.db or "
            "duckdb:///abs/path.duckdb"
        )
    )
    table: str | None = Field(
        default=None, description="Table to read, optionally schema-qualified (schema.table)."
    )
    query: str | None = Field(
        default=None,
        description="A single SELECT used as a subquery (instead of table), e.g. a join.",
    )
    columns: list[str] | None = Field(
        default=None,
        description="Columns to read (default: all). Watermark and id are always read.",
    )
    watermark_column: str = Field(
        description="Column that increases whenever a row changes (e.g. updated_at)."
    )
    id_column: str = Field(description="Record id: tie-breaker within one watermark value.")
    batch_rows: int = Field(default=50_000, ge=1, description="Rows per batch (memory bound).")
    max_rows_per_run: int | None = Field(
        default=None, ge=1, description="Stop a run after this many rows (resumes next run)."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, description="Retries of transient errors.")
    backoff_s: float = Field(default=1.0, ge=0, description="First retry delay (doubles).")
    max_backoff_s: float = Field(default=30.0, ge=0, description="Longest delay between tries.")
    retry_total_s: float = Field(
        default=60.0,
        gt=0,
        description="No retry starts later than this after the first try of a query.",
    )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.max_retries + 1,
            first_wait_s=self.backoff_s,
            max_wait_s=self.max_backoff_s,
            total_s=self.retry_total_s,
        )

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: str) -> str:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in _PG_SCHEMES:
            if not parts.hostname:
                raise ValueError(f"postgres dsn {redact_dsn(value)!r} has no host")
        elif scheme in _FILE_SCHEMES:
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError(
                    f"{scheme} dsn must be {scheme}:///absolute/path (got {redact_dsn(value)!r})"
                )
        else:
            raise ValueError(
                f"dsn scheme {parts.scheme!r} is not supported: use postgresql://, sqlite:/// "
                "or duckdb:///"
            )
        return value

    @field_validator("table")
    @classmethod
    def _valid_table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) > 3:
            raise ValueError(f"table {value!r} has more than catalog.schema.table parts")
        for part in parts:
            _check_identifier(part, f"table {value!r}: part")
        return value

    @field_validator("query")
    @classmethod
    def _valid_query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        body = value.strip().rstrip(";").strip()
        # One statement only: the query is embedded as a subquery, and DuckDB would run any
        # statement before a ';' immediately.
        if ";" in body:
            raise ValueError("query must be a single SELECT statement (no ';')")
        if not re.match(r"(?is)^(select|with)\b", body):
            raise ValueError("query must start with SELECT or WITH")
        return body

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("columns must not be empty (leave it out to read all columns)")
        return [_check_identifier(c, "column") for c in value]

    @field_validator("watermark_column", "id_column")
    @classmethod
    def _valid_key_column(cls, value: str) -> str:
        return _check_identifier(value, "column")

    @model_validator(mode="after")
    def _table_xor_query(self) -> SqlSourceConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table or query")
        return self

    @property
    def dialect(self) -> Literal["postgres", "sqlite", "duckdb"]:
        scheme = urlsplit(self.dsn).scheme.lower()
        if scheme in _PG_SCHEMES:
            return "postgres"
        return "sqlite" if scheme == "sqlite" else "duckdb"

    @property
    def file_path(self) -> Path:
        """The database file of a sqlite/duckdb DSN."""
        return Path(urlsplit(self.dsn).path)

    @property
    def password(self) -> str | None:
        parts = urlsplit(self.dsn)
        if parts.password:
            return parts.password
        for key, val in parse_qsl(parts.query):
            if key.lower() == "password" and val:
                return val
        return None


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


def _comparable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Extension columns (uuid) compared by their storage: compute kernels skip extensions."""
    if isinstance(column.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    return column


def _position_value(value: Any, column: str, source: str) -> str | int | float:
    """A key value as JSON: numbers stay numbers, time values become ISO-8601 text."""
    if isinstance(value, bool) or value is None:
        raise PermanentSourceError(
            source, f"column {column}", f"{value!r} cannot be a keyset position"
        )
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PermanentSourceError(source, f"column {column}", f"non-finite value {value}")
        return value
    if isinstance(value, datetime | date | dt_time) or hasattr(value, "isoformat"):
        return str(value.isoformat())  # datetime, date, time, pandas.Timestamp (nanoseconds)
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise PermanentSourceError(
        source,
        f"column {column}",
        f"type {type(value).__name__} cannot be a watermark or id (use a number, text, "
        "date or timestamp column)",
    )


def _batch_id(source: str, start: tuple[Any, str] | None, end: tuple[Any, str]) -> str:
    """Same source and same (start, end] key range: same id, so a re-read rewrites the part."""
    payload = json.dumps(
        {"source": source, "start": list(start) if start else None, "end": list(end)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class _Session:
    """One connection for one run, reconnecting with backoff on transient errors."""

    def __init__(self, reader: SqlReader) -> None:
        self.reader = reader
        self.config = reader.config
        self.backend = reader.backend
        self.conn: Any = None

    def close(self) -> None:
        if self.conn is not None:
            self.backend.close(self.conn)
            self.conn = None

    def run(self, action: Callable[[Any], T]) -> T:
        """``action(connection)`` under the reader's retry policy.

        Driver errors become source errors here: transient ones drop the connection (a broken
        one is not reused) and are retried; permanent ones (bad credentials, a missing table,
        SQL the server rejects) fail at once.
        """
        reader = self.reader

        def attempt() -> T:
            try:
                if self.conn is None:
                    self.conn = self.backend.connect()
                return action(self.conn)
            except SourceError:
                raise
            except Exception as exc:
                failure = self.backend.classify(exc)
                if failure is None:
                    raise
                if failure.transient:
                    self.close()
                    raise TransientSourceError(reader.describe(), None, failure.args[0]) from exc
                raise PermanentSourceError(
                    reader.describe(), None, f"{failure.args[0]} (not retried: {_PERMANENT})"
                ) from exc

        return call_with_retry(
            attempt,
            policy=reader.retry_policy,
            source=reader.describe(),
            what="query",
            stats=reader.retry_stats,
        )

    def prepare(self, *, cached: bool) -> _KeyTypes:
        """Check table and columns exist (clear errors before reading) and learn key types.

        A run always probes, so a dropped table or column fails with a clear message before
        anything is read; ``has_new`` may reuse what the last probe learnt.
        """
        if not cached or self.reader.key_types is None:
            self.reader.key_types = self.run(self._probe)
        return self.reader.key_types

    def _probe(self, conn: Any) -> _KeyTypes:
        reader = self.reader
        source = reader.source_sql
        try:
            probe = self.backend.query(
                conn, f"SELECT {reader.select_list} FROM {source} LIMIT 0", []
            )
        except Exception as exc:
            failure = self.backend.classify(exc)
            if failure is None or failure.transient:
                raise
            self._explain_missing(conn, failure.args[0])
            raise
        if any(c not in probe.column_names for c in reader.wanted_columns):
            # SELECT * succeeds without the key columns: name them before reading anything.
            self._explain_missing(conn, "key columns missing")
        return self.backend.key_types(conn, probe, source)

    def _explain_missing(self, conn: Any, driver_message: str) -> None:
        """Turn "the probe failed" into "table X is missing" or "columns a, b are missing"."""
        reader = self.reader
        what = f"table {self.config.table}" if self.config.table else "query"
        try:
            available = self.backend.query(
                conn, f"SELECT * FROM {reader.source_sql} LIMIT 0", []
            ).column_names
        except Exception as exc:
            failure = self.backend.classify(exc)
            if failure is None or failure.transient:
                raise
            raise PermanentSourceError(
                reader.describe(),
                what,
                (
                    f"{what} does not exist or cannot be read: {failure.args[0]}"
                    if self.config.table
                    else f"query failed: {failure.args[0]}"
                ),
            ) from exc
        missing = [c for c in reader.wanted_columns if c not in available]
        if missing:
            raise PermanentSourceError(
                reader.describe(),
                ", ".join(f"column {c}" for c in missing),
                f"column(s) {', '.join(missing)} not found in {what} "
                f"(it has: {', '.join(available)})",
            )
        raise PermanentSourceError(reader.describe(), what, driver_message)


class SqlReader:
    """Reads one configured table or query after a ``(watermark, id)`` cursor, oldest first."""

    def __init__(self, config: SqlSourceConfig) -> None:
        self.config = config
        self._password = config.password
        self.backend = _BACKENDS[config.dialect](config, self._scrub)
        self.key_types: _KeyTypes | None = None
        """Learnt by the probe at the start of each run; reused by ``has_new`` (sensors poll)."""
        self.retry_policy = config.retry_policy
        self.retry_stats = RetryStats()
        """Retries over this reader's life, for run metadata."""

    # -- SQL building (identifiers only from the validated config) -------------------------

    @property
    def source_sql(self) -> str:
        if self.config.table:
            return ".".join(_quote(p) for p in self.config.table.split(".")) + " AS src"
        return f"({self.config.query}) AS src"

    @property
    def wanted_columns(self) -> list[str]:
        cfg = self.config
        cols = list(cfg.columns or [])
        for key in (cfg.watermark_column, cfg.id_column):
            if key not in cols:
                cols.append(key)  # the cursor needs them even if the user did not ask
        return cols

    @property
    def select_list(self) -> str:
        if self.config.columns is None:
            return "*"
        return ", ".join(_quote(c) for c in self.wanted_columns)

    def _where(self, start: tuple[Any, str] | None, types: _KeyTypes) -> tuple[str, list[Any]]:
        wm = _quote(self.config.watermark_column)
        key = _quote(self.config.id_column)
        where = f"{wm} IS NOT NULL AND {key} IS NOT NULL"
        if start is None:
            return where, []
        p1 = self.backend.placeholder(1, types.watermark)
        p2 = self.backend.placeholder(2, types.id)
        where += f" AND {wm} >= {p1} AND ({wm} > {p1} OR {key} > {p2})"
        params = [
            self.backend.bind(start[0], types.watermark),
            self.backend.bind(start[1], types.id),
        ]
        return where, params

    # -- SourceReader ----------------------------------------------------------------------

    def describe(self) -> str:
        cfg = self.config
        if cfg.table:
            return f"{redact_dsn(cfg.dsn)} table {cfg.table}"
        short = " ".join(cfg.query.split()) if cfg.query else ""
        return f"{redact_dsn(cfg.dsn)} query {short[:80]}"

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        cfg = self.config
        start = self._start(cursor)
        total = int((cursor or {}).get("rows", 0))
        emitted = 0
        session = self._open()
        try:
            types = session.prepare(cached=False)
            wm = _quote(cfg.watermark_column)
            key = _quote(cfg.id_column)
            while True:
                limit = cfg.batch_rows
                if cfg.max_rows_per_run is not None:
                    limit = min(limit, cfg.max_rows_per_run - emitted)
                if limit <= 0:
                    return
                where, params = self._where(start, types)
                sql = (
                    f"SELECT {self.select_list} FROM {self.source_sql} WHERE {where} "
                    f"ORDER BY {wm}, {key} LIMIT {int(limit)}"
                )
                table = session.run(
                    lambda conn, sql=sql, params=params: self.backend.query(conn, sql, params)
                )
                if table.num_rows == 0:
                    return
                end = self._end(table)
                if end == start:  # the engine and the cursor disagree on order: never loop
                    raise PermanentSourceError(
                        self.describe(), "cursor", f"no progress past {start!r}: check key types"
                    )
                total += table.num_rows
                emitted += table.num_rows
                batch = SourceBatch(
                    table=table,
                    batch_id=_batch_id(self.describe(), start, end),
                    source=self.describe(),
                    cursor={"watermark": end[0], "id": end[1], "rows": total},
                )
                short = table.num_rows < limit
                del table  # only the consumer holds the rows from here on
                yield batch
                del batch
                if short:
                    return  # a short page is the end: no extra empty query
                start = end
        finally:
            session.close()

    def has_new(self, cursor: Cursor) -> bool:
        start = self._start(cursor)
        session = self._open()
        try:
            types = session.prepare(cached=True)
            where, params = self._where(start, types)
            sql = f"SELECT 1 AS one FROM {self.source_sql} WHERE {where} LIMIT 1"
            found = session.run(lambda conn: self.backend.query(conn, sql, params))
            return found.num_rows > 0
        finally:
            session.close()

    # -- helpers ---------------------------------------------------------------------------

    def _scrub(self, message: str) -> str:
        if self._password:
            message = message.replace(self._password, "***")
            message = message.replace(unquote(self._password), "***")
        return message

    def _open(self) -> _Session:
        if self.config.dialect != "postgres" and not self.config.file_path.is_file():
            raise PermanentSourceError(
                self.describe(), None, f"database file {self.config.file_path} does not exist"
            )
        return _Session(self)

    def _start(self, cursor: Cursor | None) -> tuple[Any, str] | None:
        if not cursor or cursor.get("watermark") is None:
            return None
        if "id" not in cursor or cursor["id"] is None:
            raise PermanentSourceError(
                self.describe(), "cursor", f"cursor {cursor!r} has a watermark but no id"
            )
        return cursor["watermark"], str(cursor["id"])

    def _end(self, table: pa.Table) -> tuple[Any, str]:
        """The (watermark, id) of the batch's last row, after checking the key is unique.

        Keyset pagination relies on (watermark, id) being unique: rows sharing the key of a
        batch's last row would be skipped by the next query. A non-unique ``id_column`` is a
        config error, so a batch with two adjacent equal keys fails loudly instead.
        """
        cfg = self.config
        source = self.describe()
        last = table.num_rows - 1
        if last > 0:
            wm_col = _comparable(table.column(cfg.watermark_column))
            id_col = _comparable(table.column(cfg.id_column))
            same = pc.and_(
                pc.equal(wm_col.slice(0, last), wm_col.slice(1)),
                pc.equal(id_col.slice(0, last), id_col.slice(1)),
            )
            if pc.any(same).as_py():
                row = pc.index(same, True).as_py()
                raise PermanentSourceError(
                    source,
                    f"column {cfg.id_column}",
                    f"({cfg.watermark_column}, {cfg.id_column}) is not unique: "
                    f"{table.column(cfg.id_column)[row].as_py()!r} occurs twice at "
                    f"{table.column(cfg.watermark_column)[row].as_py()!r}; keyset reading "
                    "would skip rows, so id_column must identify one record",
                )
        wm = _position_value(
            table.column(cfg.watermark_column)[last].as_py(), cfg.watermark_column, source
        )
        key = _position_value(table.column(cfg.id_column)[last].as_py(), cfg.id_column, source)
        return wm, str(key)
