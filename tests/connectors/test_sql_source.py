"""The ``sql`` connector kind against a real Postgres and real SQLite / DuckDB files.

What a user would notice: every changed row arrives exactly once per change, a crash between
batches re-reads (never skips), memory does not grow with the table, and bad config or a
down server fail with a message that names the problem and never the password.

Postgres is a hard requirement: if 127.0.0.1:5432 is unreachable these tests fail, they do not
skip.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pydantic
import pytest

from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    SourceBatch,
    TransientSourceError,
)
from aios_dagster.lib.connectors.sql_source import SqlReader, SqlSourceConfig

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BASE = datetime(2024, 1, 1, tzinfo=UTC)


# -- helpers -------------------------------------------------------------------------------


def run(reader: SqlReader, cursor: Cursor) -> list[SourceBatch]:
    """One connector run, as the runtime drives it (every batch consumed)."""
    return list(reader.batches(cursor))


def ids(batches: list[SourceBatch]) -> list[int]:
    return [int(i) for b in batches for i in b.table.column("id").to_pylist()]


def sizes(batches: list[SourceBatch]) -> list[int]:
    return [b.table.num_rows for b in batches]


def pg_reader(table: str, **overrides: Any) -> SqlReader:
    cfg: dict[str, Any] = {
        "dsn": PG_DSN,
        "table": table,
        "watermark_column": "updated_at",
        "id_column": "id",
        "batch_rows": 3_333,
        **overrides,
    }
    return SqlReader(SqlSourceConfig(**cfg))


@pytest.fixture
def pg() -> Iterator[psycopg.Connection]:
    """Setup connection to the real Postgres; unreachable means a loud failure, not a skip."""
    conn = psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True, connect_timeout=5
    )
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def pg_table(pg: psycopg.Connection) -> Iterator[str]:
    """A unique table name in database ``test``, dropped afterwards."""
    name = f"sqlsrc_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        pg.execute(f'DROP TABLE IF EXISTS "{name}"')


@pytest.fixture
def events(pg: psycopg.Connection, pg_table: str) -> str:
    """10,000 rows, 100 distinct ``updated_at`` values with 100 rows each.

    ``updated_at = BASE + (id % 100) s``, so (watermark, id) order is not id order and every
    batch boundary of 3,333 rows cuts through a group of equal watermarks.
    """
    pg.execute(
        f"""
        CREATE TABLE "{pg_table}" (
            id bigint PRIMARY KEY, updated_at timestamptz NOT NULL,
            amount double precision, note text, "order" integer);
        CREATE INDEX ON "{pg_table}" (updated_at, id);
        INSERT INTO "{pg_table}"
        SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g % 100) * interval '1 second',
               g * 0.5, 'row ' || g, g % 7
        FROM generate_series(1, 10000) g;
        """
    )
    return pg_table


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Postgres: keyset pagination -----------------------------------------------------------


def test_postgres_equal_watermarks_across_batches_every_id_once(events: str) -> None:
    reader = pg_reader(events)
    batches = run(reader, {})

    assert sizes(batches) == [3_333, 3_333, 3_333, 1]
    got = ids(batches)
    assert len(got) == len(set(got)) == 10_000
    assert set(got) == set(range(1, 10_001))
    # A boundary really splits a group of equal watermarks, and the next batch continues it.
    first_of_second = batches[1].table.column("updated_at")[0].as_py()
    assert datetime.fromisoformat(batches[0].cursor["watermark"]) == first_of_second
    # Rows come in (watermark, id) order, and the last cursor is the maximum (wm, id).
    keys = [
        (r["updated_at"], r["id"])
        for b in batches
        for r in b.table.select(["updated_at", "id"]).to_pylist()
    ]
    assert keys == sorted(keys)
    last = batches[-1].cursor
    assert datetime.fromisoformat(last["watermark"]) == BASE + timedelta(seconds=99)
    assert last["id"] == "9999"
    assert last["rows"] == 10_000
    # The cursor is plain JSON and the table keeps Postgres types.
    assert isinstance(last["watermark"], str)
    assert batches[0].table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    # batch_id is deterministic: a second read from scratch names the same parts.
    assert [b.batch_id for b in run(reader, {})] == [b.batch_id for b in batches]
    assert len({b.batch_id for b in batches}) == 4
    assert "test" in batches[0].source and events in batches[0].source


def test_postgres_incremental_updates_and_inserts(pg: psycopg.Connection, events: str) -> None:
    reader = pg_reader(events)
    cursor = run(reader, {})[-1].cursor
    assert reader.has_new(cursor) is False
    assert run(reader, cursor) == []

    later = BASE + timedelta(hours=1)
    pg.execute(
        f'UPDATE "{events}" SET updated_at = %s, note = %s WHERE id %% 200 = 0', (later, "x")
    )
    pg.execute(
        f'INSERT INTO "{events}" (id, updated_at, note) '
        "SELECT g, %s, 'new' FROM generate_series(10001, 10020) g",
        (later,),
    )
    assert reader.has_new(cursor) is True

    batches = run(reader, cursor)
    expected = {i for i in range(200, 10_001, 200)} | set(range(10_001, 10_021))
    assert len(expected) == 70
    assert sorted(ids(batches)) == sorted(expected)
    assert batches[-1].cursor["rows"] == 10_070
    assert reader.has_new(batches[-1].cursor) is False


def test_postgres_crash_between_batches_resumes_without_gaps(events: str) -> None:
    reader = pg_reader(events)
    full = run(reader, {})

    # The runtime saved only batch 1's cursor, then crashed: the next run starts at batch 2.
    resumed = run(reader, full[0].cursor)
    assert [b.batch_id for b in resumed] == [b.batch_id for b in full[1:]]
    assert ids(resumed) == ids(full[1:])
    assert sorted(ids(full[:1]) + ids(resumed)) == list(range(1, 10_001))
    assert resumed[-1].cursor == full[-1].cursor

    # Abandoning a run mid-way (generator closed after one batch) loses nothing either.
    gen = reader.batches({})
    first = next(gen)
    gen.close()
    rest = run(reader, first.cursor)
    assert sorted(ids([first, *rest])) == list(range(1, 10_001))


def test_postgres_max_rows_per_run_and_column_subset(events: str) -> None:
    # "order" is a reserved word: quoting makes it just a column.
    reader = pg_reader(events, max_rows_per_run=5_000, columns=["order", "note"])
    first = run(reader, {})
    assert sizes(first) == [3_333, 1_667]
    # Watermark and id are always read (the cursor needs them), after the requested columns.
    assert first[0].table.column_names == ["order", "note", "updated_at", "id"]
    second = run(reader, first[-1].cursor)
    assert sizes(second) == [3_333, 1_667]
    assert sorted(ids(first + second)) == list(range(1, 10_001))
    assert second[-1].cursor["rows"] == 10_000


def test_postgres_query_source(pg: psycopg.Connection, events: str) -> None:
    reader = SqlReader(
        SqlSourceConfig(
            dsn=PG_DSN,
            query=f'SELECT id, updated_at, amount * 2 AS doubled FROM "{events}" WHERE id <= 500;',
            watermark_column="updated_at",
            id_column="id",
            batch_rows=64,
        )
    )
    batches = run(reader, {})
    assert sorted(ids(batches)) == list(range(1, 501))
    assert max(sizes(batches)) == 64
    assert "query SELECT id" in reader.describe()


# -- bounded memory ------------------------------------------------------------------------


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_postgres_memory_stays_bounded_on_a_large_table(
    pg: psycopg.Connection, pg_table: str
) -> None:
    """~1,000,000 rows (~120 MB as Arrow) read in 50,000-row batches.

    ``pyarrow.total_allocated_bytes()`` alone cannot show this: ADBC's drivers allocate with
    their own allocator (nanoarrow/malloc) and hand buffers over through the C data interface,
    so the pyarrow pool reads ~0 however much is held. The process RSS, sampled after each
    batch, is what actually grows if batches accumulate; both are asserted.
    """
    n = 1_000_000
    pg.execute(
        f"""
        CREATE TABLE "{pg_table}" (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL,
                                   amount double precision, note text);
        INSERT INTO "{pg_table}"
        SELECT g, timestamptz '2024-01-01' + (g / 10) * interval '1 second', g * 0.25,
               md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text)
        FROM generate_series(1, {n}) g;
        CREATE INDEX ON "{pg_table}" (updated_at, id);
        ANALYZE "{pg_table}";
        """
    )
    reader = pg_reader(pg_table, batch_rows=50_000)
    assert reader.has_new({}) is True  # drivers loaded before the baseline
    gc.collect()
    bound = 40 * 2**20
    baseline_rss = _rss()
    peak_rss = peak_pool = 0
    rows = id_sum = total_arrow = 0
    for batch in reader.batches({}):
        assert batch.table.num_rows <= 50_000
        rows += batch.table.num_rows
        id_sum += pa.compute.sum(batch.table.column("id")).as_py()
        total_arrow += batch.table.nbytes
        del batch  # the runtime lets go of a batch once it is written
        peak_rss = max(peak_rss, _rss() - baseline_rss)
        peak_pool = max(peak_pool, pa.total_allocated_bytes())

    assert rows == n
    assert id_sum == n * (n + 1) // 2  # every id exactly once
    assert total_arrow > 2.5 * bound, "the table must be much larger than the bound"
    assert peak_rss < bound, f"RSS grew {peak_rss / 2**20:.0f} MiB while reading"
    assert peak_pool < bound


# -- SQLite and DuckDB files ---------------------------------------------------------------


@dataclass
class FileDb:
    """A database file plus how to change it (with the engine's own writer API)."""

    dsn: str
    execute: Callable[[str, list[Any]], None]
    stamp: Callable[[datetime], Any]  # how the engine stores a timestamp


def _sqlite_db(path: Path) -> FileDb:
    def execute(sql: str, params: list[Any]) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(sql.replace("$1", "?").replace("$2", "?"), params)
        conn.close()

    with sqlite3.connect(path) as conn:
        # No timestamp type in SQLite: ISO-8601 text with one fixed format and offset.
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TEXT, note TEXT)")
        conn.execute("CREATE INDEX events_keyset ON events (updated_at, id)")
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(i, (BASE + timedelta(seconds=i % 100)).isoformat(), f"r{i}") for i in range(1, 1001)],
        )
    conn.close()
    return FileDb(f"sqlite:///{path}", execute, lambda ts: ts.isoformat())


def _duckdb_db(path: Path) -> FileDb:
    def execute(sql: str, params: list[Any]) -> None:
        # The reader opens read_only; a writer must be closed first (DuckDB file lock).
        with duckdb.connect(str(path)) as conn:
            conn.execute(sql, params)

    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, updated_at TIMESTAMP, note TEXT)")
        conn.execute(
            "INSERT INTO events SELECT g, TIMESTAMP '2024-01-01' + to_seconds(g % 100), 'r' || g "
            "FROM range(1, 1001) t(g)"
        )
    return FileDb(f"duckdb:///{path}", execute, lambda ts: ts.replace(tzinfo=None))


@pytest.fixture(params=["sqlite", "duckdb"])
def file_db(request: pytest.FixtureRequest, tmp_path: Path) -> FileDb:
    """1,000 rows, 10 per watermark (``BASE + id % 100`` seconds), in a fresh file."""
    if request.param == "sqlite":
        return _sqlite_db(tmp_path / "source.db")
    return _duckdb_db(tmp_path / "source.duckdb")


def test_file_db_keyset_crash_and_incremental(file_db: FileDb) -> None:
    reader = SqlReader(
        SqlSourceConfig(
            dsn=file_db.dsn,
            table="events",
            watermark_column="updated_at",
            id_column="id",
            batch_rows=333,
        )
    )
    batches = run(reader, {})
    assert sizes(batches) == [333, 333, 333, 1]
    assert sorted(ids(batches)) == list(range(1, 1001))
    last = batches[-1].cursor
    assert last["id"] == "999"
    assert last["rows"] == 1000
    assert datetime.fromisoformat(last["watermark"]).replace(tzinfo=UTC) == BASE + timedelta(
        seconds=99
    )

    # Crash after batch 1: resume from its cursor, same batch ids, nothing missing.
    resumed = run(reader, batches[0].cursor)
    assert [b.batch_id for b in resumed] == [b.batch_id for b in batches[1:]]
    assert sorted(ids(batches[:1]) + ids(resumed)) == list(range(1, 1001))

    assert reader.has_new(last) is False
    later = file_db.stamp(BASE + timedelta(hours=1))
    file_db.execute("UPDATE events SET updated_at = $1 WHERE id % 20 = 0", [later])
    for i in range(1001, 1021):
        file_db.execute("INSERT INTO events VALUES ($1, $2, 'new')", [i, later])
    assert reader.has_new(last) is True

    changed = run(reader, last)
    assert sorted(ids(changed)) == sorted({*range(20, 1001, 20), *range(1001, 1021)})
    assert len(ids(changed)) == 70
    assert reader.has_new(changed[-1].cursor) is False


def test_sqlite_query_source_with_integer_ids(tmp_path: Path) -> None:
    """An expression column has no SQLite type affinity: the id must still bind as an integer.

    Bound as the text '42', SQLite would order every integer id before it and silently read
    nothing after the first batch.
    """
    db = _sqlite_db(tmp_path / "q.db")
    reader = SqlReader(
        SqlSourceConfig(
            dsn=db.dsn,
            query="SELECT id + 0 AS id, updated_at, upper(note) AS note FROM events",
            watermark_column="updated_at",
            id_column="id",
            batch_rows=77,  # boundaries fall inside groups of equal watermarks
        )
    )
    batches = run(reader, {})
    assert sizes(batches) == [77] * 12 + [76]
    assert sorted(ids(batches)) == list(range(1, 1001))


def test_sqlite_source_is_opened_read_only(tmp_path: Path) -> None:
    db = _sqlite_db(tmp_path / "ro.db")
    before = (tmp_path / "ro.db").read_bytes()
    reader = SqlReader(
        SqlSourceConfig(dsn=db.dsn, table="events", watermark_column="updated_at", id_column="id")
    )
    assert len(ids(run(reader, {}))) == 1000
    assert (tmp_path / "ro.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.db"]  # no journal, no WAL


# -- identifiers and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("table", "x; drop table y"),
        ("table", 'x" ; drop table y; --'),
        ("table", "a.b.c.d"),
        ("watermark_column", "updated_at) OR (1=1"),
        ("id_column", "id--"),
        ("columns", ["note", "1; drop table y"]),
    ],
)
def test_identifier_injection_rejected_before_any_query(field: str, value: Any) -> None:
    cfg: dict[str, Any] = {
        # A dead server: if anything tried to query, this would be a connection error instead.
        "dsn": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
        "table": "events",
        "watermark_column": "updated_at",
        "id_column": "id",
        field: value,
    }
    with pytest.raises(pydantic.ValidationError, match=r"not a plain SQL identifier|catalog"):
        SqlSourceConfig(**cfg)


def test_config_rejects_multi_statement_query_and_bad_dsn() -> None:
    base = {"watermark_column": "updated_at", "id_column": "id"}
    with pytest.raises(pydantic.ValidationError, match="single SELECT"):
        SqlSourceConfig(dsn=PG_DSN, query="SELECT 1; DROP TABLE y", **base)
    with pytest.raises(pydantic.ValidationError, match="exactly one of table or query"):
        SqlSourceConfig(dsn=PG_DSN, table="t", query="SELECT 1", **base)
    with pytest.raises(pydantic.ValidationError, match="not supported") as err:
        SqlSourceConfig(dsn="mysql://u:Sup3rS3cret@h/db", table="t", **base)
    assert "Sup3rS3cret" not in str(err.value)  # a rejected dsn is not echoed back
    with pytest.raises(pydantic.ValidationError, match="absolute"):
        SqlSourceConfig(dsn="sqlite://relative.db", table="t", **base)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        SqlSourceConfig(dsn=PG_DSN, table="t", watermark="x", **base)  # type: ignore[call-arg]


def test_postgres_missing_column_and_table_are_permanent_and_named(events: str) -> None:
    reader = pg_reader(events, columns=["note", "no_such_col"])
    with pytest.raises(PermanentSourceError) as err:
        run(reader, {})
    assert "no_such_col" in str(err.value)
    assert "note" in str(err.value)  # lists what the table does have

    bad_wm = pg_reader(events, watermark_column="changed_at")
    with pytest.raises(PermanentSourceError, match="changed_at"):
        bad_wm.has_new({})

    missing = pg_reader(f"{events}_gone")
    with pytest.raises(PermanentSourceError, match=f"table {events}_gone"):
        run(missing, {})


def test_postgres_down_is_transient_names_host_port_not_password() -> None:
    port = closed_port()
    reader = SqlReader(
        SqlSourceConfig(
            dsn=f"postgresql://loader:Sup3rS3cret@127.0.0.1:{port}/test",
            table="events",
            watermark_column="updated_at",
            id_column="id",
            max_retries=2,
            backoff_s=0.01,
        )
    )
    assert "Sup3rS3cret" not in reader.describe()
    for attempt in (lambda: run(reader, {}), lambda: reader.has_new({})):
        with pytest.raises(TransientSourceError) as err:
            attempt()
        message = str(err.value)
        assert "Sup3rS3cret" not in message
        assert f"127.0.0.1:{port}" in message
        assert "3 attempt(s)" in message
        assert "Sup3rS3cret" not in repr(err.value.__cause__)


def test_missing_database_files_are_permanent(tmp_path: Path) -> None:
    for dsn in (f"sqlite:///{tmp_path}/nope.db", f"duckdb:///{tmp_path}/nope.duckdb"):
        reader = SqlReader(
            SqlSourceConfig(dsn=dsn, table="events", watermark_column="updated_at", id_column="id")
        )
        with pytest.raises(PermanentSourceError, match="does not exist"):
            run(reader, {})
        with pytest.raises(PermanentSourceError, match="nope"):
            reader.has_new({})
    assert list(tmp_path.iterdir()) == []  # a read-only reader does not create the file


def test_file_db_missing_column_is_permanent(file_db: FileDb) -> None:
    reader = SqlReader(
        SqlSourceConfig(
            dsn=file_db.dsn, table="events", watermark_column="modified", id_column="id"
        )
    )
    with pytest.raises(PermanentSourceError, match="modified"):
        run(reader, {})


def test_postgres_non_timestamp_keys_bind_as_their_own_types(
    pg: psycopg.Connection, pg_table: str
) -> None:
    """numeric watermark + uuid id, date watermark + text id: the cursor is text, cast back."""
    pg.execute(
        f"""
        CREATE TABLE "{pg_table}" (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                                   version numeric(12, 3), day date, code text);
        INSERT INTO "{pg_table}" (version, day, code)
        SELECT (g % 7) + 0.125, date '2024-01-01' + (g % 5), 'k' || g
        FROM generate_series(1, 1000) g;
        """
    )
    for wm, key in (("version", "id"), ("day", "code")):
        reader = pg_reader(pg_table, watermark_column=wm, id_column=key, batch_rows=97)
        batches = run(reader, {})
        keys = [str(k) for b in batches for k in b.table.column(key).to_pylist()]
        assert len(keys) == len(set(keys)) == 1000
        resumed = run(reader, batches[3].cursor)
        assert sum(sizes(resumed)) == 1000 - 4 * 97
        assert reader.has_new(batches[-1].cursor) is False
    # numeric arrives as lossless text (the driver's opaque type is unwrapped), cursor too;
    # uuid as canonical text (pandas would otherwise see 16 raw bytes).
    assert batches[0].table.schema.field("version").type == pa.string()
    assert batches[0].table.schema.field("id").type == pa.string()
    first_id = batches[0].table.column("id")[0].as_py()
    assert str(uuid.UUID(first_id)) == first_id


def test_postgres_non_unique_id_fails_instead_of_skipping(
    pg: psycopg.Connection, pg_table: str
) -> None:
    pg.execute(
        f"""
        CREATE TABLE "{pg_table}" (id int, updated_at timestamptz);
        INSERT INTO "{pg_table}"
        SELECT g % 10, timestamptz '2024-01-01' FROM generate_series(1, 100) g;
        """
    )
    with pytest.raises(PermanentSourceError, match=r"\(updated_at, id\) is not unique"):
        run(pg_reader(pg_table, batch_rows=30), {})


def test_postgres_connection_lost_mid_run_reconnects(pg: psycopg.Connection, events: str) -> None:
    """The server drops the reader's connection between batches: retried, nothing lost."""
    app = f"sqlsrc_{uuid.uuid4().hex[:8]}"
    reader = pg_reader(events, dsn=f"{PG_DSN}?application_name={app}", backoff_s=0.01)
    gen = reader.batches({})
    got = [next(gen)]
    killed = pg.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (app,),
    ).fetchone()
    assert killed == (1,)
    got.extend(gen)
    assert sorted(ids(got)) == list(range(1, 10_001))


def test_sqlite_batches_keep_one_schema_when_a_column_is_sparse(tmp_path: Path) -> None:
    """SQLite types come from values: an all-NULL column in one batch must not turn int64."""
    path = tmp_path / "sparse.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, changed INTEGER, note TEXT, x REAL)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            [(i, i, None if i <= 50 else "n", None if i <= 50 else 0.5) for i in range(1, 101)],
        )
    conn.close()
    reader = SqlReader(
        SqlSourceConfig(
            dsn=f"sqlite:///{path}",
            table="main.t",
            watermark_column="changed",
            id_column="id",
            batch_rows=50,
        )
    )
    batches = run(reader, {})
    assert sizes(batches) == [50, 50]
    assert batches[0].table.schema == batches[1].table.schema
    assert batches[0].table.schema.field("note").type == pa.string()
    assert batches[-1].cursor == {"watermark": 100, "id": "100", "rows": 100}  # numbers stay


# -- one retry policy: transient errors retried within a budget, permanent ones never ---------


@contextlib.contextmanager
def table_locked(table: str, release_after_s: float | None) -> Iterator[None]:
    """Another session holds ``ACCESS EXCLUSIVE`` on ``table`` (a migration), committing after
    ``release_after_s`` seconds (never, while the block runs, if ``None``)."""
    holder = psycopg.connect(PG_DSN, connect_timeout=5)
    holder.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
    timer = threading.Timer(release_after_s, holder.commit) if release_after_s else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.join()
        holder.close()


def lock_waiting_reader(table: str, **overrides: Any) -> SqlReader:
    """A reader whose queries give up on a held lock after 200 ms (SQLSTATE 55P03)."""
    lock_timeout = "options=-c%20lock_timeout%3D200"
    return pg_reader(table, dsn=f"{PG_DSN}?{lock_timeout}", **overrides)


def test_postgres_lock_held_by_a_migration_is_retried_logged_and_recovers(
    events: str, caplog: pytest.LogCaptureFixture
) -> None:
    reader = lock_waiting_reader(events, backoff_s=0.2, max_retries=20)
    with caplog.at_level(logging.WARNING), table_locked(events, release_after_s=1.0):
        batches = run(reader, {})
    assert sorted(ids(batches)) == list(range(1, 10_001))
    assert reader.retry_stats.retries >= 1
    assert reader.retry_stats.metadata()["retries"] == reader.retry_stats.retries
    logged = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(logged) == reader.retry_stats.retries
    assert all(m.startswith(reader.describe()) and "lock" in m for m in logged)


def test_postgres_retries_stop_at_the_total_time_budget(events: str) -> None:
    """A lock never released: the run fails within ``retry_total_s``, not after 100 tries."""
    reader = lock_waiting_reader(events, backoff_s=0.1, max_retries=100, retry_total_s=1.5)
    started = time.monotonic()
    with table_locked(events, release_after_s=None), pytest.raises(TransientSourceError) as err:
        run(reader, {})
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0  # the budget, plus one attempt, plus slack for a busy machine
    assert 2 <= reader.retry_stats.attempts < 100
    assert f"gave up after {reader.retry_stats.attempts} attempt(s)" in str(err.value)
    assert str(err.value).startswith(reader.describe())


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"table": "no_such_table"}, "table no_such_table does not exist"),
        ({"columns": ["note", "no_such_col"]}, "no_such_col not found"),
        ({"query": "SELECT id, updated_at FROM (VALUES (1)) v(id) WHERE"}, "syntax error"),
        ({"dsn": "postgresql://postgres@127.0.0.1:5432/no_such_db"}, "does not exist"),
        ({"dsn": "postgresql://no_such_role@127.0.0.1:5432/test"}, "does not exist"),
        ({"dsn": f"{PG_DSN}?options=-c%20no_such_setting%3D1"}, "unrecognized configuration"),
    ],
)
def test_postgres_permanent_errors_fail_in_one_attempt(
    events: str, overrides: dict[str, Any], rule: str
) -> None:
    """A long backoff would show: nothing that cannot succeed is tried twice."""
    config: dict[str, Any] = {
        "dsn": PG_DSN,
        "table": None if "query" in overrides else events,
        "watermark_column": "updated_at",
        "id_column": "id",
        "backoff_s": 5.0,
        "max_retries": 5,
        **overrides,
    }
    reader = SqlReader(SqlSourceConfig(**config))
    started = time.monotonic()
    with pytest.raises(PermanentSourceError) as err:
        run(reader, {})
    assert time.monotonic() - started < 2.0
    assert reader.retry_stats.attempts == 1
    assert reader.retry_stats.retries == 0
    assert str(err.value).startswith(reader.describe())
    assert rule in str(err.value)


def test_file_db_errors_name_the_database_as_configured(tmp_path: Path) -> None:
    """The source in every message is the DSN as written (``sqlite:///abs``), not a mangled URL."""
    path = tmp_path / "named.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER, updated_at INTEGER)")
    conn.close()
    reader = SqlReader(
        SqlSourceConfig(
            dsn=f"sqlite:///{path}", table="missing", watermark_column="updated_at", id_column="id"
        )
    )
    with pytest.raises(PermanentSourceError) as err:
        run(reader, {})
    assert str(err.value).startswith(f"sqlite:///{path} table missing")
