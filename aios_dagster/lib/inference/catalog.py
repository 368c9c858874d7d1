"""The model catalog: which feature columns feed which Triton tensor, and the decision policy.

Declared in YAML (one entry per model) so adding a model or changing its threshold is a reviewed
config change, not code. The catalog is the single source of the feature order used by training,
Triton requests and in-process reference scoring alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from aios_dagster.lib.features.text import arrow_to_vectors


@dataclass(frozen=True)
class HeadSpec:
    name: str
    label_column: str


@dataclass(frozen=True)
class DecisionPolicy:
    """Below ``min_confidence`` on the routing head a ticket goes to human review."""

    name: str
    min_confidence: float
    review_queue: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    triton_model: str
    feature_table: str
    training_table: str
    id_column: str
    time_column: str
    numeric_features: tuple[str, ...]
    vector_features: tuple[str, ...]
    heads: tuple[HeadSpec, ...]
    policy: DecisionPolicy
    min_holdout_accuracy: float
    input_tensor: str = "features"
    max_batch_size: int = 1024

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return self.numeric_features + self.vector_features

    def build_matrix(self, table: pa.Table) -> np.ndarray:
        """Feature matrix in catalog order, float32 C-contiguous (what Triton receives)."""
        return self.build_matrix_with_names(table)[0]

    def build_matrix_with_names(self, table: pa.Table) -> tuple[np.ndarray, tuple[str, ...]]:
        """The matrix and one name per column (``text_vec[17]`` for vector elements)."""
        vectors = {c: arrow_to_vectors(table.column(c)) for c in self.vector_features}
        names = list(self.numeric_features)
        for col, vec in vectors.items():
            names += [f"{col}[{i}]" for i in range(vec.shape[1])]
        parts = [
            table.column(c).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)
            for c in self.numeric_features
        ] + list(vectors.values())
        if not parts or table.num_rows == 0:
            return np.zeros((table.num_rows, 0), dtype=np.float32), tuple(names)
        matrix = np.ascontiguousarray(np.hstack(parts), dtype=np.float32)
        bad = ~np.isfinite(matrix).all(axis=0)
        if bad.any():
            cols = sorted({n.split("[")[0] for n, b in zip(names, bad, strict=True) if b})
            raise ValueError(
                f"model {self.name}: feature table {self.feature_table} has null or non-finite "
                f"values in {cols}; fix the feature model rather than scoring garbage"
            )
        return matrix, tuple(names)


def load_catalog(path: Path) -> dict[str, ModelSpec]:
    data = yaml.safe_load(path.read_text())
    specs: dict[str, ModelSpec] = {}
    for name, m in data["models"].items():
        policy = m["policy"]
        specs[name] = ModelSpec(
            name=name,
            triton_model=m.get("triton_model", name),
            feature_table=m["feature_table"],
            training_table=m["training_table"],
            id_column=m["id_column"],
            time_column=m["time_column"],
            numeric_features=tuple(m["inputs"]["numeric"]),
            vector_features=tuple(m["inputs"].get("vectors", [])),
            heads=tuple(HeadSpec(h, spec["label_column"]) for h, spec in m["heads"].items()),
            policy=DecisionPolicy(
                name=policy["name"],
                min_confidence=float(policy["min_confidence"]),
                review_queue=policy["review_queue"],
            ),
            min_holdout_accuracy=float(m["gate"]["min_holdout_accuracy"]),
            input_tensor=m.get("input_tensor", "features"),
            max_batch_size=int(m.get("max_batch_size", 1024)),
        )
    return specs
