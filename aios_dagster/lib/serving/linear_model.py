"""The model format the training code produces, and its in-process reference implementation.

A ``LinearHeadsModel`` is a shared standardisation step followed by several independent
softmax heads (for example "queue" and "priority" for ticket routing). It is deliberately
tiny and numpy-only so that the exact same maths can run in three places:

* here, in-process (``predict_proba``), as the correctness reference and the throughput
  ceiling that serving benchmarks compare against;
* inside Triton, in the self-contained Python backend ``python_backend/model.py``, which reads
  the ``weights.npz`` written by ``to_npz`` without importing this package;
* in tests, which assert the served outputs equal the in-process ones.

The ``.npz`` layout is therefore a contract with the backend: a JSON ``meta`` string plus plain
float32 arrays, loadable with ``allow_pickle=False`` (pickles in model files are a code
execution risk and break across numpy versions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Version of the ``weights.npz`` layout; the backend refuses files it does not understand.
NPZ_FORMAT_VERSION = 1

#: Label and feature names travel comma-joined in Triton config parameters.
_FORBIDDEN_NAME_CHARS = (",", "\n", '"')


def _check_name(kind: str, value: str) -> None:
    if not value or any(ch in value for ch in _FORBIDDEN_NAME_CHARS):
        raise ValueError(
            f"{kind} {value!r} must be non-empty and contain no commas, quotes or newlines "
            "(names are stored comma-joined in the Triton model config)"
        )


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise numerically stable softmax in float32 (the same code runs in the backend)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


@dataclass(frozen=True)
class LinearHead:
    """One softmax head: ``softmax(x_std @ coef.T + intercept)`` over ``labels``."""

    name: str
    labels: tuple[str, ...]
    coef: np.ndarray  # float32 (n_labels, n_features)
    intercept: np.ndarray  # float32 (n_labels,)

    def __post_init__(self) -> None:
        _check_name("head name", self.name)
        if not self.name.replace("_", "").isalnum():
            # The head name becomes a Triton output name ``<head>_probs`` and a config key.
            raise ValueError(f"head name {self.name!r} must be alphanumeric/underscore")
        for label in self.labels:
            _check_name("label", label)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"head {self.name!r} has duplicate labels: {self.labels}")
        coef = np.ascontiguousarray(self.coef, dtype=np.float32)
        intercept = np.ascontiguousarray(self.intercept, dtype=np.float32)
        if coef.ndim != 2 or coef.shape[0] != len(self.labels):
            raise ValueError(
                f"head {self.name!r}: coef must be (n_labels={len(self.labels)}, n_features), "
                f"got {coef.shape}"
            )
        if intercept.shape != (len(self.labels),):
            raise ValueError(
                f"head {self.name!r}: intercept must be ({len(self.labels)},), "
                f"got {intercept.shape}"
            )
        # Frozen dataclass: normalise dtypes once so hashing and serving see identical bytes.
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "intercept", intercept)

    @property
    def output_name(self) -> str:
        """Name of this head's Triton output tensor."""
        return f"{self.name}_probs"


@dataclass(frozen=True)
class LinearHeadsModel:
    """Standardise features, then apply several linear softmax heads."""

    feature_names: tuple[str, ...]
    mean: np.ndarray  # float32 (n_features,)
    scale: np.ndarray  # float32 (n_features,)
    heads: tuple[LinearHead, ...]

    def __post_init__(self) -> None:
        for name in self.feature_names:
            _check_name("feature name", name)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature names must be unique")
        n = len(self.feature_names)
        mean = np.ascontiguousarray(self.mean, dtype=np.float32)
        scale = np.ascontiguousarray(self.scale, dtype=np.float32)
        if mean.shape != (n,) or scale.shape != (n,):
            raise ValueError(f"mean/scale must be ({n},), got {mean.shape} and {scale.shape}")
        if not np.all(np.isfinite(scale)) or np.any(scale == 0):
            raise ValueError("scale must be finite and non-zero (it divides the features)")
        if not self.heads:
            raise ValueError("a model needs at least one head")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate head names: {names}")
        for head in self.heads:
            if head.coef.shape[1] != n:
                raise ValueError(
                    f"head {head.name!r} expects {head.coef.shape[1]} features, model has {n}"
                )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "heads", tuple(self.heads))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict_proba(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Head name -> float32 (n_rows, n_labels) probabilities, computed in-process.

        All heads share one matrix multiply (their coefficients are stacked) because that is
        what makes this the honest throughput ceiling for the served path.
        """
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (n, {self.n_features}), got {x.shape}")
        coef = np.concatenate([h.coef for h in self.heads], axis=0)
        intercept = np.concatenate([h.intercept for h in self.heads])
        logits = ((x - self.mean) / self.scale) @ coef.T
        logits += intercept
        out: dict[str, np.ndarray] = {}
        start = 0
        for head in self.heads:
            stop = start + len(head.labels)
            out[head.name] = softmax_rows(np.ascontiguousarray(logits[:, start:stop]))
            start = stop
        return out

    def _meta(self) -> dict[str, object]:
        return {
            "format_version": NPZ_FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "heads": [{"name": h.name, "labels": list(h.labels)} for h in self.heads],
        }

    def to_npz(self, path: Path) -> None:
        """Write the layout ``python_backend/model.py`` reads (no pickles)."""
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(self._meta(), sort_keys=True)),
            "mean": self.mean,
            "scale": self.scale,
        }
        for i, head in enumerate(self.heads):
            arrays[f"coef_{i}"] = head.coef
            arrays[f"intercept_{i}"] = head.intercept
        with Path(path).open("wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def from_npz(cls, path: Path) -> LinearHeadsModel:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format_version") != NPZ_FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported weights format {meta.get('format_version')!r}"
                )
            heads = tuple(
                LinearHead(
                    name=h["name"],
                    labels=tuple(h["labels"]),
                    coef=data[f"coef_{i}"],
                    intercept=data[f"intercept_{i}"],
                )
                for i, h in enumerate(meta["heads"])
            )
            return cls(
                feature_names=tuple(meta["feature_names"]),
                mean=data["mean"],
                scale=data["scale"],
                heads=heads,
            )

    def content_hash(self) -> str:
        """sha256 over names, labels and array bytes: same weights -> same hash.

        Used by publishing to make re-publishing identical weights a no-op. Shapes are hashed
        along with the bytes so that differently shaped arrays with equal bytes differ.
        """
        digest = hashlib.sha256()

        def add_array(arr: np.ndarray) -> None:
            digest.update(repr((str(arr.dtype), arr.shape)).encode())
            digest.update(np.ascontiguousarray(arr).tobytes())

        digest.update(json.dumps(self._meta(), sort_keys=True).encode())
        add_array(self.mean)
        add_array(self.scale)
        for head in self.heads:
            add_array(head.coef)
            add_array(head.intercept)
        return digest.hexdigest()

    @classmethod
    def random(
        cls,
        n_features: int,
        head_sizes: dict[str, int],
        *,
        seed: int = 0,
    ) -> LinearHeadsModel:
        """A random model with plausible shapes, for tests and benchmarks."""
        rng = np.random.default_rng(seed)
        heads = tuple(
            LinearHead(
                name=name,
                labels=tuple(f"{name}_{j}" for j in range(size)),
                coef=rng.normal(0.0, 0.3, size=(size, n_features)).astype(np.float32),
                intercept=rng.normal(0.0, 0.5, size=size).astype(np.float32),
            )
            for name, size in head_sizes.items()
        )
        return cls(
            feature_names=tuple(f"f{i}" for i in range(n_features)),
            mean=rng.normal(0.0, 1.0, size=n_features).astype(np.float32),
            scale=rng.uniform(0.5, 2.0, size=n_features).astype(np.float32),
            heads=heads,
        )
