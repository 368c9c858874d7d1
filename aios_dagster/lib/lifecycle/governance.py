"""The audit trail MLflow does not keep: who moved which alias when and why, and approvals.

MLflow stores only an alias's *current* version, so "which version was champion at time T"
(MLflow issue #2169) and "what was the champion before this one" (#6180) cannot be answered
from it. These append-only tables live in the registry's own backend database (SQLite embedded,
PostgreSQL in production), beside MLflow's tables, so the registry and its audit are backed up
and restored together. Database triggers refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL): a correction is a new row, never an edit.

An alias change is recorded in two steps around the MLflow write (see
``ModelRegistry.set_alias``): an *intent* row in ``aios_alias_events``, then an *outcome* row in
``aios_alias_outcomes`` (``applied`` or ``abandoned``). Only applied events are history, so a
crash between the steps can leave an unconfirmed intent but never a history that claims a
change MLflow did not make.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import sqlalchemy as sa


Decision = Literal["approved", "rejected"]
DECISIONS: tuple[str, ...] = ("approved", "rejected")
APPLIED = "applied"
ABANDONED = "abandoned"
EXTERNAL_ACTOR = "unknown (changed outside the aios registry)"

ALIAS_EVENTS = "aios_alias_events"
ALIAS_OUTCOMES = "aios_alias_outcomes"
APPROVALS = "aios_approvals"
APPEND_ONLY = (ALIAS_EVENTS, ALIAS_OUTCOMES, APPROVALS)


@dataclass(frozen=True)
class _Schema:
    meta: sa.MetaData
    events: sa.Table
    outcomes: sa.Table
    approvals: sa.Table


@functools.cache
def _schema() -> _Schema:
    """The tables, built on first use: SQLAlchemy is not imported with the definitions."""
    import sqlalchemy as sa

    meta = sa.MetaData()
    events = sa.Table(
        ALIAS_EVENTS,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),  # None: the alias was removed
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),  # registry | external
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(actor) > 0 and length(reason) > 0", name="aios_alias_who_why"),
        sa.Index("aios_alias_events_by_alias", "model_name", "alias", "id"),
    )
    outcomes = sa.Table(
        ALIAS_OUTCOMES,
        meta,
        sa.Column("event_id", sa.Integer, sa.ForeignKey(events.c.id), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome in ('applied', 'abandoned')", name="aios_alias_outcome_kind"),
    )
    approvals = sa.Table(
        APPROVALS,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("decision in ('approved', 'rejected')", name="aios_approval_kind"),
        sa.CheckConstraint(
            "length(actor) > 0 and length(reason) > 0", name="aios_approval_who_why"
        ),
        sa.Index("aios_approvals_by_version", "model_name", "version", "id"),
    )
    return _Schema(meta, events, outcomes, approvals)


@dataclass(frozen=True)
class AliasEvent:
    """One applied alias change. ``version`` None means the alias was removed.

    ``at`` is when the change was decided (the intent row), which precedes the MLflow write by
    milliseconds; ``source`` is ``external`` for a change found in MLflow that was not made
    through the registry (the MLflow UI, say): its ``at`` is when it was found.
    """

    id: int
    model_name: str
    alias: str
    version: int | None
    previous_version: int | None
    actor: str
    reason: str
    at: datetime
    source: str = "registry"


@dataclass(frozen=True)
class Approval:
    """A person's decision on one version: approved or rejected, by whom, when and why."""

    id: int
    model_name: str
    version: int
    decision: str
    actor: str
    reason: str
    at: datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything written here is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def require_text(what: str, value: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ValueError(f"{what} must not be empty: the audit records who decided and why")
    return text


_SQLITE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb} ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END
"""
# '%%': the driver takes a single '%' for a parameter placeholder.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION aios_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%% is append-only: %% refused', TG_TABLE_NAME, TG_OP; END $$
"""
_PG_TRIGGERS = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{table}_append_only'
                 AND tgrelid = '{table}'::regclass) THEN
    CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
      FOR EACH ROW EXECUTE FUNCTION aios_refuse_change();
    CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
      FOR EACH STATEMENT EXECUTE FUNCTION aios_refuse_change();
  END IF;
END $$
"""


class GovernanceStore:
    """The append-only tables in one database, created (with their triggers) on first use."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"registry backend {self.dialect!r} is not supported for the audit tables "
                "(use sqlite:/// embedded or postgresql+psycopg:// in production)"
            )
        # SQLite: wait for MLflow's writer instead of failing at once with "database is locked".
        args = {"timeout": 30} if self.dialect == "sqlite" else {}
        self.engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
        self._ready = False

    def ensure_tables(self) -> None:
        if self._ready:
            return
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Two processes creating the tables at once would collide on pg_type.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("ddl")})
            _schema().meta.create_all(conn, checkfirst=True)
            if self.dialect == "sqlite":
                for table in APPEND_ONLY:
                    for verb in ("UPDATE", "DELETE"):
                        conn.exec_driver_sql(_SQLITE_TRIGGER.format(table=table, verb=verb))
            else:
                conn.exec_driver_sql(_PG_FUNCTION)
                for table in APPEND_ONLY:
                    conn.exec_driver_sql(_PG_TRIGGERS.format(table=table))
        self._ready = True

    @contextlib.contextmanager
    def alias_lock(self, model_name: str, alias: str) -> Iterator[None]:
        """One alias change at a time, across processes, for the whole intent-write-outcome.

        Without it two promotions racing would both record the same ``previous_version``.
        PostgreSQL: a session advisory lock. SQLite: a file lock beside the database, because
        holding a SQLite write transaction would block MLflow's own write in between.
        """
        key = _lock_key(f"alias:{model_name}:{alias}")
        if self.dialect == "postgresql":
            import sqlalchemy as sa

            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(f"{database}.aios-lock")
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- alias events -------------------------------------------------------------------

    def record_intent(
        self,
        model_name: str,
        alias: str,
        version: int | None,
        previous: int | None,
        *,
        actor: str,
        reason: str,
        source: str = "registry",
    ) -> AliasEvent:
        self.ensure_tables()
        at = utc_now()
        row = {
            "model_name": model_name,
            "alias": alias,
            "version": version,
            "previous_version": previous,
            "actor": actor,
            "reason": reason,
            "source": source,
            "recorded_at": at,
        }
        with self.engine.begin() as conn:
            event_id = conn.execute(_schema().events.insert().values(**row)).inserted_primary_key[0]
        return AliasEvent(
            int(event_id), model_name, alias, version, previous, actor, reason, at, source
        )

    def record_outcome(self, event_id: int, outcome: str) -> None:
        self.ensure_tables()
        with self.engine.begin() as conn:
            conn.execute(
                _schema()
                .outcomes.insert()
                .values(event_id=event_id, outcome=outcome, recorded_at=utc_now())
            )

    def record_external(
        self, model_name: str, alias: str, version: int | None, previous: int | None
    ) -> AliasEvent:
        """An alias found in MLflow that history does not explain, recorded as applied."""
        event = self.record_intent(
            model_name,
            alias,
            version,
            previous,
            actor=EXTERNAL_ACTOR,
            reason=f"found at {_v(version)} in MLflow where the history says {_v(previous)}; "
            "changed outside the aios registry, so who, why and the exact time are unknown",
            source="external",
        )
        self.record_outcome(event.id, APPLIED)
        return event

    def events(
        self, model_name: str, alias: str | None = None
    ) -> list[tuple[AliasEvent, str | None]]:
        """Every recorded intent with its outcome (None: not settled yet), oldest first."""
        import sqlalchemy as sa

        self.ensure_tables()
        t = _schema()
        query = (
            sa.select(t.events, t.outcomes.c.outcome)
            .select_from(t.events.outerjoin(t.outcomes))
            .where(t.events.c.model_name == model_name)
            .order_by(t.events.c.id)
        )
        if alias is not None:
            query = query.where(t.events.c.alias == alias)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            (
                AliasEvent(
                    id=r["id"],
                    model_name=r["model_name"],
                    alias=r["alias"],
                    version=r["version"],
                    previous_version=r["previous_version"],
                    actor=r["actor"],
                    reason=r["reason"],
                    at=_utc(r["recorded_at"]),
                    source=r["source"],
                ),
                r["outcome"],
            )
            for r in rows
        ]

    def history(self, model_name: str, alias: str | None = None) -> list[AliasEvent]:
        return [e for e, outcome in self.events(model_name, alias) if outcome == APPLIED]

    def aliases_recorded(self, model_name: str) -> set[str]:
        import sqlalchemy as sa

        self.ensure_tables()
        events = _schema().events
        query = sa.select(events.c.alias).where(events.c.model_name == model_name)
        with self.engine.connect() as conn:
            return set(conn.execute(query.distinct()).scalars())

    # --- approvals ----------------------------------------------------------------------

    def record_approval(
        self, model_name: str, version: int, decision: str, *, actor: str, reason: str
    ) -> Approval:
        self.ensure_tables()
        at = utc_now()
        with self.engine.begin() as conn:
            approval_id = conn.execute(
                _schema()
                .approvals.insert()
                .values(
                    model_name=model_name,
                    version=version,
                    decision=decision,
                    actor=actor,
                    reason=reason,
                    recorded_at=at,
                )
            ).inserted_primary_key[0]
        return Approval(int(approval_id), model_name, version, decision, actor, reason, at)

    def approvals(self, model_name: str, version: int | None = None) -> list[Approval]:
        """Decisions on a model (or one version of it), oldest first."""
        import sqlalchemy as sa

        self.ensure_tables()
        table = _schema().approvals
        query = sa.select(table).where(table.c.model_name == model_name).order_by(table.c.id)
        if version is not None:
            query = query.where(table.c.version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Approval(
                id=r["id"],
                model_name=r["model_name"],
                version=r["version"],
                decision=r["decision"],
                actor=r["actor"],
                reason=r["reason"],
                at=_utc(r["recorded_at"]),
            )
            for r in rows
        ]


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "no version"


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory-lock key (what pg_advisory_lock takes) for a name."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)
