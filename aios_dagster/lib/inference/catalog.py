"""The model catalog: which feature columns feed which Triton tensor, and the decision policy.

Declared in YAML (one ``defs/models/<name>/defs.yaml`` per model) so adding a model or changing
its threshold is a reviewed config change, not code. The declaration is the single source of the
feature order used by training, Triton requests and in-process reference scoring alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aios_dagster.lib.features.text import arrow_to_vectors
from aios_dagster.lib.monitoring.drift_config import (
    MonitoringConfig,
    MonitoringSpec,
    prediction_columns,
)


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
class HeadFloor:
    """The least a candidate must reach on one head's holdout, whatever the champion does."""

    accuracy: float = 0.0
    macro_f1: float = 0.0
    recall: Mapping[str, float] = field(default_factory=dict)  # per class label


@dataclass(frozen=True)
class GateSpec:
    """Promotion gate: absolute floors per head, and non-inferiority against the champion.

    Non-inferiority: on every head, the candidate's ``non_inferiority_metric`` may be lower
    than the champion's on the same holdout rows by at most ``non_inferiority_margin``.
    """

    floors: Mapping[str, HeadFloor] = field(default_factory=dict)
    non_inferiority_metric: str = "macro_f1"
    non_inferiority_margin: float = 0.02
    holdout_fraction: float = 0.2
    # 0/1 indicator features whose rows get their own metrics (the model card's per-segment
    # view); reported, not gated.
    segments: tuple[str, ...] = ()


RISK_CLASSES = ("minimal", "limited", "high")


@dataclass(frozen=True)
class GovernanceSpec:
    """EU AI Act style risk class and what the model card states about intended use.

    A ``high`` risk model is never promoted to champion before a person approves the version.
    """

    risk_class: str = "limited"
    intended_use: str = ""
    limitations: tuple[str, ...] = ()
    owner: str = ""

    @property
    def approval_required(self) -> bool:
        return self.risk_class == "high"


@dataclass(frozen=True)
class RolloutSpec:
    """Share of records (by a hash of the record id) decided by the challenger while canarying."""

    canary_share: float = 0.0


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
    gate: GateSpec = field(default_factory=GateSpec)
    governance: GovernanceSpec = field(default_factory=GovernanceSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
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


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TENSOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _unit_interval(field: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{field} must be between 0 and 1, not {value}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputsConfig(_Strict):
    numeric: list[str] = Field(default_factory=list)
    vectors: list[str] = Field(default_factory=list)


class HeadConfig(_Strict):
    label_column: str


class PolicyConfig(_Strict):
    name: str
    min_confidence: float
    review_queue: str

    @field_validator("min_confidence")
    @classmethod
    def _share(cls, value: float) -> float:
        return _unit_interval("min_confidence", value)


class FloorConfig(_Strict):
    accuracy: float = 0.0
    macro_f1: float = 0.0
    recall: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shares(self) -> FloorConfig:
        _unit_interval("accuracy", self.accuracy)
        _unit_interval("macro_f1", self.macro_f1)
        for label, value in self.recall.items():
            _unit_interval(f"recall.{label}", value)
        return self


class NonInferiorityConfig(_Strict):
    metric: str = "macro_f1"
    margin: float = 0.02

    @model_validator(mode="after")
    def _valid(self) -> NonInferiorityConfig:
        if self.metric not in ("accuracy", "macro_f1"):
            raise ValueError(f"metric must be accuracy or macro_f1, not {self.metric!r}")
        _unit_interval("margin", self.margin)
        return self


class GateConfig(_Strict):
    holdout_fraction: float = 0.2
    floors: dict[str, FloorConfig] = Field(default_factory=dict)
    non_inferiority: NonInferiorityConfig = Field(default_factory=NonInferiorityConfig)
    segments: list[str] = Field(default_factory=list)

    @field_validator("holdout_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"holdout_fraction must be between 0 and 1 (exclusive), not {value}")
        return value


class GovernanceConfig(_Strict):
    risk_class: str = "limited"
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)
    owner: str = ""

    @field_validator("risk_class")
    @classmethod
    def _risk(cls, value: str) -> str:
        if value not in RISK_CLASSES:
            raise ValueError(f"risk_class must be one of {list(RISK_CLASSES)}, not {value!r}")
        return value


class RolloutConfig(_Strict):
    canary_share: float = 0.0

    @field_validator("canary_share")
    @classmethod
    def _share(cls, value: float) -> float:
        return _unit_interval("canary_share", value)


class ModelConfig(_Strict):
    """A model as declared in YAML (``defs/models/<name>/defs.yaml``), validated on load so a
    typo fails when the code location loads, naming the file and the field."""

    name: str
    triton_model: str | None = None
    feature_table: str
    training_table: str
    id_column: str
    time_column: str
    input_tensor: str = "features"
    max_batch_size: int = 1024
    inputs: InputsConfig
    heads: dict[str, HeadConfig]
    policy: PolicyConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    drift: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name!r} must be snake_case")
        if not _TENSOR.match(self.input_tensor):
            raise ValueError(f"input_tensor {self.input_tensor!r} is not a valid tensor name")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {self.max_batch_size}")
        if not self.heads:
            raise ValueError("heads: declare at least one output head")
        if not self.inputs.numeric and not self.inputs.vectors:
            raise ValueError("inputs: declare at least one feature column")
        unknown = sorted(set(self.gate.floors) - set(self.heads))
        if unknown:
            raise ValueError(f"gate.floors: {unknown} are not heads (heads: {sorted(self.heads)})")
        stray = sorted(set(self.gate.segments) - set(self.inputs.numeric))
        if stray:
            raise ValueError(f"gate.segments: {stray} are not numeric inputs")
        self.drift.features.check_columns(self.inputs.numeric, "drift.features")
        self.drift.predictions.check_columns(
            prediction_columns(list(self.heads)), "drift.predictions"
        )
        return self

    def to_spec(self) -> ModelSpec:
        return ModelSpec(
            name=self.name,
            triton_model=self.triton_model or self.name,
            feature_table=self.feature_table,
            training_table=self.training_table,
            id_column=self.id_column,
            time_column=self.time_column,
            numeric_features=tuple(self.inputs.numeric),
            vector_features=tuple(self.inputs.vectors),
            heads=tuple(HeadSpec(h, c.label_column) for h, c in self.heads.items()),
            policy=DecisionPolicy(
                name=self.policy.name,
                min_confidence=self.policy.min_confidence,
                review_queue=self.policy.review_queue,
            ),
            gate=GateSpec(
                floors={
                    h: HeadFloor(f.accuracy, f.macro_f1, dict(f.recall))
                    for h, f in self.gate.floors.items()
                },
                non_inferiority_metric=self.gate.non_inferiority.metric,
                non_inferiority_margin=self.gate.non_inferiority.margin,
                holdout_fraction=self.gate.holdout_fraction,
                segments=tuple(self.gate.segments),
            ),
            governance=GovernanceSpec(
                risk_class=self.governance.risk_class,
                intended_use=self.governance.intended_use,
                limitations=tuple(self.governance.limitations),
                owner=self.governance.owner,
            ),
            rollout=RolloutSpec(canary_share=self.rollout.canary_share),
            monitoring=MonitoringSpec.of(self.drift),
            input_tensor=self.input_tensor,
            max_batch_size=self.max_batch_size,
        )


MODEL_COMPONENT = "aios_dagster.lib.model_component.ModelComponent"


def load_catalog(models_dir: Path) -> dict[str, ModelSpec]:
    """Every model declared under ``models_dir`` (``<name>/defs.yaml`` of the model Component).

    For code outside a Dagster load (the CLI, the demo summary, tests) that needs the same
    specs the definitions were built from.
    """
    specs: dict[str, ModelSpec] = {}
    for path in sorted(models_dir.glob("*/defs.yaml")):
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or doc.get("type") != MODEL_COMPONENT:
            continue
        try:
            spec = ModelConfig.model_validate(doc.get("attributes") or {}).to_spec()
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid model: {_errors(exc)}") from exc
        specs[spec.name] = spec
    return specs


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )
