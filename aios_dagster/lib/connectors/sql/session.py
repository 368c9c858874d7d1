"""One database connection per run, with retries and clear errors for missing tables/columns.

Kept apart from the reader so that the retry and error-classification policy (what is retried,
what fails at once, how a failed probe is explained) reads on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aios_dagster.lib.connectors.source import (
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from aios_dagster.lib.connectors.sql.backends import _KeyTypes
from aios_dagster.lib.retry import call_with_retry

if TYPE_CHECKING:
    from aios_dagster.lib.connectors.sql_source import SqlReader

T = TypeVar("T")

_PERMANENT = "the server rejected the connection or the SQL, so asking again cannot succeed"


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
