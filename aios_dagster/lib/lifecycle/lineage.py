"""What a model version was made from: data window, rows, features, contracts, code, run.

Stored with every registered version (``lineage.json`` and tags), so an auditor can answer
"which data and which code produced the model that decided this email" without the Dagster
run still being around.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios_dagster.lib.inference.catalog import ModelSpec
    from aios_dagster.settings import Settings

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Lineage:
    """Where a version came from. Windows are ISO times of the first and last row used."""

    training_table: str
    time_column: str
    train_window: tuple[str, str]
    holdout_window: tuple[str, str]
    rows_train: int
    rows_holdout: int
    features: tuple[str, ...]  # catalog feature columns, in the order the model reads them
    dbt_manifest_hash: str
    contract_versions: Mapping[str, str]  # contract name -> sha256 of its expectations JSON
    git_commit: str
    content_hash: str
    dagster_run_id: str
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train_window"] = list(self.train_window)
        data["holdout_window"] = list(self.holdout_window)
        data["features"] = list(self.features)
        data["contract_versions"] = dict(self.contract_versions)
        data["extra"] = dict(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        return cls(
            training_table=str(data["training_table"]),
            time_column=str(data["time_column"]),
            train_window=_window(data["train_window"]),
            holdout_window=_window(data["holdout_window"]),
            rows_train=int(data["rows_train"]),
            rows_holdout=int(data["rows_holdout"]),
            features=tuple(data["features"]),
            dbt_manifest_hash=str(data["dbt_manifest_hash"]),
            contract_versions=dict(data["contract_versions"]),
            git_commit=str(data["git_commit"]),
            content_hash=str(data["content_hash"]),
            dagster_run_id=str(data["dagster_run_id"]),
            extra=dict(data.get("extra", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Lineage:
        return cls.from_dict(json.loads(text))

    def version_tags(self) -> dict[str, str]:
        """The lineage as MLflow version tags: searchable and visible in the MLflow UI."""
        return {
            "content_hash": self.content_hash,
            "git_commit": self.git_commit,
            "dagster_run_id": self.dagster_run_id,
            "training_table": self.training_table,
            "train_window": f"{self.train_window[0]} .. {self.train_window[1]}",
            "holdout_window": f"{self.holdout_window[0]} .. {self.holdout_window[1]}",
            "rows_train": str(self.rows_train),
            "rows_holdout": str(self.rows_holdout),
            "dbt_manifest_hash": self.dbt_manifest_hash,
        }


def _window(value: Iterable[Any]) -> tuple[str, str]:
    start, end = (_iso(v) for v in value)
    return start, end


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def git_commit(directory: Path) -> str:
    """HEAD of the checkout holding ``directory``, ``+dirty`` when tracked files differ;
    ``unknown`` outside a checkout (an installed package, an image without ``.git``)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return f"{head}+dirty" if changed else head


def dbt_manifest_hash(manifest: Path) -> str:
    """sha256 over the dbt project's content as recorded in ``manifest.json``.

    Not the file's own hash: every ``dbt parse`` writes a new ``generated_at`` and
    ``invocation_id``, so that hash would change with no change to any model. The nodes' own
    checksums (hashes of their SQL) and the sources' relations change only with the project.
    """
    if not manifest.is_file():
        return UNKNOWN
    data = json.loads(manifest.read_text())
    content = {
        "nodes": {k: n.get("checksum", {}).get("checksum") for k, n in data["nodes"].items()},
        "sources": {k: s.get("relation_name") for k, s in data.get("sources", {}).items()},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def upstream_sources(manifest: Path, table: str) -> list[str]:
    """Identifiers of the dbt sources ``table`` is built from (the lake datasets it reads)."""
    if not manifest.is_file():
        return []
    data = json.loads(manifest.read_text())
    parents: dict[str, list[str]] = data.get("parent_map", {})
    starts = [k for k, n in data["nodes"].items() if n.get("name") == table]
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        node = todo.pop()
        for parent in parents.get(node, []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    sources = data.get("sources", {})
    return sorted({sources[s]["identifier"] for s in seen if s in sources})


def contract_versions(expectations_dir: Path, contracts: Iterable[str]) -> dict[str, str]:
    """Contract name -> sha256 of its reviewed suite (``expectations/<name>.json``)."""
    out: dict[str, str] = {}
    for name in sorted(set(contracts)):
        path = expectations_dir / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"contract {name!r} has no suite at {path}")
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def input_contracts(settings: Settings, datasets: Iterable[str]) -> list[str]:
    """The contracts of the connectors that land ``datasets`` (their asset names); datasets
    made by the project's own assets (text features) have none."""
    from aios_dagster.lib.connectors.component import connector_specs

    wanted = set(datasets)
    return sorted({s.contract for s in connector_specs(settings) if s.name in wanted})


def collect_lineage(
    spec: ModelSpec,
    *,
    settings: Settings,
    train_window: tuple[Any, Any],
    holdout_window: tuple[Any, Any],
    rows_train: int,
    rows_holdout: int,
    content_hash: str,
    run_id: str,
) -> Lineage:
    """Lineage of a model trained from ``spec.training_table`` in this checkout.

    The contracts are found, not declared: the dbt manifest's parent map gives the lake
    datasets the training table is built from, and the connectors landing them name their
    contracts.
    """
    manifest = settings.dbt_project_dir / "target" / "manifest.json"
    datasets = upstream_sources(manifest, spec.training_table)
    return Lineage(
        training_table=spec.training_table,
        time_column=spec.time_column,
        train_window=_window(train_window),
        holdout_window=_window(holdout_window),
        rows_train=rows_train,
        rows_holdout=rows_holdout,
        features=spec.feature_columns,
        dbt_manifest_hash=dbt_manifest_hash(manifest),
        contract_versions=contract_versions(
            settings.expectations_dir, input_contracts(settings, datasets)
        ),
        git_commit=git_commit(settings.project_dir),
        content_hash=content_hash,
        dagster_run_id=run_id,
        extra={"source_datasets": ",".join(datasets)},
    )
