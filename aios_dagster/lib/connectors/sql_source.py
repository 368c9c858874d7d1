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

from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.source import Cursor, PermanentSourceError, SourceBatch
from aios_dagster.lib.connectors.sql.backends import _BACKENDS, _KeyTypes
from aios_dagster.lib.connectors.sql.config import (
    IDENTIFIER,
    SqlSourceConfig,
    _quote,
    redact_dsn,
)
from aios_dagster.lib.connectors.sql.keyset import _batch_id, _comparable, _position_value
from aios_dagster.lib.connectors.sql.session import _Session
from aios_dagster.lib.retry import RetryStats

__all__ = ["IDENTIFIER", "SqlReader", "SqlSourceConfig", "redact_dsn"]

T = TypeVar("T")


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
