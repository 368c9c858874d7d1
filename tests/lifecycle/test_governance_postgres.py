"""The production registry path: MLflow's PostgreSQL store plus the audit tables and triggers,
in a scratch database of the machine's real PostgreSQL, dropped afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from aios_dagster.lib.lifecycle.registry import ApprovalError, ModelRegistry
from tests.lifecycle.registry_support import register
from tests.postgres import SERVER, scratch


def test_register_alias_history_and_approval_on_postgres(tmp_path: Path) -> None:
    with scratch("database", "aios_mlflow") as database:
        uri = SERVER.replace("postgresql://", "postgresql+psycopg://") + f"/{database}"
        registry = ModelRegistry(tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))
        try:
            assert (register(registry, 1), register(registry, 2), register(registry, 1)) == (
                1,
                2,
                1,
            )
            registry.set_alias("router", "champion", 1, actor="ann", reason="first")
            between = datetime.now(UTC)
            registry.set_alias("router", "champion", 2, actor="bob", reason="better")
            assert registry.version_at("router", "champion", between) == 1
            assert registry.get_alias("router", "champion") == 2
            assert registry.previous_champion("router") == 1
            history = registry.alias_history("router", "champion")
            assert [(e.previous_version, e.version, e.actor) for e in history] == [
                (None, 1, "ann"),
                (1, 2, "bob"),
            ]
            registry.record_decision("router", 2, "rejected", actor="risk", reason="bias")
            with pytest.raises(ApprovalError, match="never be promoted"):
                registry.require_approved("router", 2)
            assert (
                registry.load_model("router", 2).content_hash()
                == registry.version("router", 2).content_hash
            )
            for statement in (
                "update aios_alias_events set reason = 'edited'",
                "delete from aios_approvals",
                "truncate aios_alias_outcomes cascade",
            ):
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # noqa: SIM117
                    with registry.audit.engine.begin() as conn:
                        conn.exec_driver_sql(statement)
            # The tables are MLflow's database's own, beside MLflow's.
            with registry.audit.engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
            assert {"registered_model_aliases", "aios_alias_events", "aios_approvals"} <= tables
        finally:
            # MLflow's own pooled connections are ended by the scratch's DROP ... WITH (FORCE).
            registry.audit.engine.dispose()
