"""A real embedded MLflow registry per test, fast.

MLflow creates its tables on a fresh SQLite file through ~50 Alembic migrations, seconds of
CPU per database. One template database is migrated per test session (with the audit tables
and their triggers), and each test gets a byte copy of it in its own ``tmp_path``: opening an
up-to-date database costs MLflow only a schema check. Everything else is real (MLflow's
SQLAlchemy store, its local artifact repository, the triggers).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from aios_dagster.lib.lifecycle.lineage import Lineage
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.serving.linear_model import LinearHeadsModel


@functools.cache
def _template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="aios-mlflow-template-"))
    atexit.register(shutil.rmtree, folder, True)
    db = folder / "mlflow.db"
    registry = ModelRegistry(tracking_uri=f"sqlite:///{db}", artifact_location=str(folder / "a"))
    registry.client.search_experiments()  # runs MLflow's migrations
    registry.audit.ensure_tables()
    registry.audit.engine.dispose()
    return db


def fresh_registry(folder: Path) -> ModelRegistry:
    """An empty registry (SQLite store + artifact folder) under ``folder``."""
    db = folder / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), db)
    return ModelRegistry(
        tracking_uri=f"sqlite:///{db}", artifact_location=str(folder / "mlflow" / "artifacts")
    )


def tiny_model(seed: int) -> LinearHeadsModel:
    """A small two-head model; a different seed gives different weights (a new version)."""
    return LinearHeadsModel.random(4, {"queue": 3, "priority": 2}, seed=seed)


def lineage_for(model: LinearHeadsModel, run_id: str = "run-1") -> Lineage:
    return Lineage(
        training_table="training_set",
        time_column="received_at",
        train_window=("2026-11-09T00:00:00", "2026-11-19T23:00:00"),
        holdout_window=("2026-11-20T00:00:00", "2026-11-22T23:00:00"),
        rows_train=800,
        rows_holdout=200,
        features=("f0", "f1", "f2", "f3"),
        dbt_manifest_hash="d" * 64,
        contract_versions={"emails": "e" * 64},
        git_commit="abc123",
        content_hash=model.content_hash(),
        dagster_run_id=run_id,
    )


def register(registry: ModelRegistry, seed: int, name: str = "router", **kwargs: object) -> int:
    """Register ``tiny_model(seed)`` and return its version number."""
    model = tiny_model(seed)
    registered = registry.register(
        name,
        model,
        params={"seed": seed},
        metrics={"holdout_accuracy_queue": float(np.float32(0.5 + seed / 100))},
        lineage=lineage_for(model),
        **kwargs,  # type: ignore[arg-type]
    )
    return registered.version
