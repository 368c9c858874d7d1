"""Triton Python-backend model serving a ``LinearHeadsModel`` from ``weights.npz``.

This file is copied verbatim into every published model version directory, so it must stay
self-contained: production Triton images (NGC) have numpy but not ``aios_dagster``. It imports
only numpy, json, pathlib and ``triton_python_backend_utils``. Keep its maths identical to
``LinearHeadsModel.predict_proba`` (standardise, one stacked matmul, per-head stable softmax):
the tests compare the two to 1e-5.

Triton hands ``execute`` every request the dynamic batcher gathered; they are concatenated and
computed in one vectorised pass, then split back, because per-call numpy overhead dominates
small requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

NPZ_FORMAT_VERSION = 1
INPUT_NAME = "features"


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class TritonPythonModel:
    """Standardise ``features`` and emit one ``<head>_probs`` output per softmax head."""

    def initialize(self, args: dict[str, str]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        weights_path = version_dir / "weights.npz"
        with np.load(weights_path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format_version") != NPZ_FORMAT_VERSION:
                raise pb_utils.TritonModelException(
                    f"{weights_path}: unsupported weights format {meta.get('format_version')!r}"
                )
            self.mean = np.ascontiguousarray(data["mean"], dtype=np.float32)
            self.scale = np.ascontiguousarray(data["scale"], dtype=np.float32)
            heads = meta["heads"]
            coefs = [np.asarray(data[f"coef_{i}"], dtype=np.float32) for i in range(len(heads))]
            intercepts = [
                np.asarray(data[f"intercept_{i}"], dtype=np.float32) for i in range(len(heads))
            ]
        self.n_features = int(self.mean.shape[0])
        self.coef_t = np.ascontiguousarray(np.concatenate(coefs, axis=0).T)
        self.intercept = np.concatenate(intercepts).astype(np.float32)
        self.slices: list[tuple[str, int, int]] = []
        start = 0
        for head, coef in zip(heads, coefs, strict=True):
            self.slices.append((f"{head['name']}_probs", start, start + coef.shape[0]))
            start += coef.shape[0]

        # Fail the load (not every request) when config.pbtxt and the weights disagree, e.g.
        # an old version whose feature count differs from the rewritten config.
        config = json.loads(args["model_config"])
        dims = [int(d) for d in config["input"][0]["dims"]]
        if dims != [self.n_features]:
            raise pb_utils.TritonModelException(
                f"config.pbtxt input dims {dims} do not match weights with "
                f"{self.n_features} features ({weights_path})"
            )

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        # Same order of operations as LinearHeadsModel.predict_proba.
        logits = ((x - self.mean) / self.scale) @ self.coef_t
        logits += self.intercept
        return [_softmax_rows(np.ascontiguousarray(logits[:, a:b])) for _, a, b in self.slices]

    def execute(self, requests: list) -> list:
        arrays: list[np.ndarray | None] = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
            x = None if tensor is None else tensor.as_numpy()
            if x is None or x.ndim != 2 or x.shape[1] != self.n_features:
                arrays.append(None)
            else:
                arrays.append(x)

        valid = [a for a in arrays if a is not None]
        outputs: list[np.ndarray] = []
        if valid:
            batch = valid[0] if len(valid) == 1 else np.concatenate(valid, axis=0)
            outputs = self._forward(batch.astype(np.float32, copy=False))

        responses = []
        offset = 0
        for x in arrays:
            if x is None:
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            f"input '{INPUT_NAME}' must be [batch, {self.n_features}] FP32"
                        ),
                    )
                )
                continue
            n = x.shape[0]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[offset : offset + n]))
                for (name, _, _), out in zip(self.slices, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            offset += n
        return responses

    def finalize(self) -> None:
        """Nothing to release: weights are plain numpy arrays."""
