"""One MLflow run per training: parameters, metrics and the files a version is made of.

The registry registers a version from the run this module logs; keeping the run's layout here
(``model/weights.npz``, ``lineage.json``, extra files at the root) gives one place that knows
where ``load_model`` and ``read_version_artifact`` find things.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from aios_dagster.lib.lifecycle.lineage import Lineage
from aios_dagster.lib.serving.linear_model import LinearHeadsModel

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

WEIGHTS = "model/weights.npz"
LINEAGE = "lineage.json"
CONTENT_HASH = "content_hash"
Files = Mapping[str, bytes | str | Path]


def log_training_run(
    client: MlflowClient,
    experiment_id: str,
    model: LinearHeadsModel,
    *,
    model_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    lineage: Lineage,
    files: Files,
) -> Run:
    """Create the run and log everything into it; the caller finishes (or fails) it."""
    from mlflow.entities import Metric, Param

    run = client.create_run(
        experiment_id,
        run_name=f"{model_name}-{lineage.content_hash[:12]}",
        tags={
            "mlflow.source.git.commit": lineage.git_commit,
            "dagster.run_id": lineage.dagster_run_id,
            CONTENT_HASH: lineage.content_hash,
        },
    )
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            params=[Param(k, v) for k, v in flatten_params(params).items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        )
        with tempfile.TemporaryDirectory(prefix="aios-register-") as tmp:
            root = Path(tmp)
            (root / WEIGHTS).parent.mkdir(parents=True)
            model.to_npz(root / WEIGHTS)
            (root / LINEAGE).write_text(lineage.to_json())
            write_files(root, files)
            client.log_artifacts(run.info.run_id, str(root))
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    return run


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as MLflow's flat string parameters (``gate.margin``)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(list(value))
        else:
            out[name] = str(value)
    return out


def artifact_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) == ".":
        raise ValueError(f"artifact path {path!r} must be relative, without '..'")
    return str(pure)


def parent_path(path: str) -> str | None:
    parent = str(PurePosixPath(path).parent)
    return None if parent == "." else parent


def checked_files(files: Files) -> dict[str, bytes | str | Path]:
    """Extra artifacts by relative path; the registry's own files cannot be replaced."""
    checked = {artifact_path(p): content for p, content in files.items()}
    reserved = {WEIGHTS, LINEAGE} & set(checked)
    if reserved:
        raise ValueError(f"artifacts {sorted(reserved)} are written by the registry itself")
    return checked


def write_files(root: Path, files: Files) -> None:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)
