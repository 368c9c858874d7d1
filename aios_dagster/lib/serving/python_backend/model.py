"""Triton Python-backend model serving a ``LinearHeadsModel`` from ``weights.npz``.

This file is copied verbatim into every published model version directory, so it must stay
self-contained: production Triton images (NGC) have numpy but not ``aios_dagster``. It imports
only numpy, json, pathlib, time and ``triton_python_backend_utils``. Keep its maths identical to
``LinearHeadsModel.predict_proba`` (standardise, one stacked matmul, per-head stable softmax):
the tests compare the two to 1e-5.

Triton hands ``execute`` every request the dynamic batcher gathered; they are concatenated and
computed in one vectorised pass, then split back, because per-call numpy overhead dominates
small requests.

The input tensor's name is read from the model's own ``config.pbtxt`` (the publisher writes
the catalog's ``input_tensor`` there), so one copy of this file serves any name.

An optional ``delay_ms`` config parameter makes every ``execute`` sleep that long first. It
exists so fault tests and capacity drills can reproduce a *slow* server (deadlines, timeouts,
a call still running when the server is killed) with the real binary instead of a fake;
production configs never set it. Requests whose client gave up while we slept (gRPC deadline)
are answered with an error instead of being computed, so a timed-out backlog drains quickly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

NPZ_FORMAT_VERSION = 1


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class TritonPythonModel:
    """Standardise the input features and emit one ``<head>_probs`` output per softmax head."""

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
        inputs = config.get("input", [])
        if len(inputs) != 1:
            raise pb_utils.TritonModelException(
                f"config.pbtxt must declare exactly one input tensor, found {len(inputs)}"
            )
        self.input_name = str(inputs[0]["name"])
        dims = [int(d) for d in inputs[0]["dims"]]
        if dims != [self.n_features]:
            raise pb_utils.TritonModelException(
                f"config.pbtxt input dims {dims} do not match weights with "
                f"{self.n_features} features ({weights_path})"
            )
        delay = config.get("parameters", {}).get("delay_ms", {}).get("string_value", "0")
        try:
            self.delay_s = max(0.0, float(delay)) / 1000.0
        except ValueError as exc:
            raise pb_utils.TritonModelException(
                f"config parameter delay_ms must be a number of milliseconds, got {delay!r}"
            ) from exc

    @staticmethod
    def _cancelled(request: object) -> bool:
        """True if the client already gave up (older stubs lack ``is_cancelled``)."""
        is_cancelled = getattr(request, "is_cancelled", None)
        return bool(is_cancelled()) if callable(is_cancelled) else False

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        # Same order of operations as LinearHeadsModel.predict_proba.
        logits = ((x - self.mean) / self.scale) @ self.coef_t
        logits += self.intercept
        return [_softmax_rows(np.ascontiguousarray(logits[:, a:b])) for _, a, b in self.slices]

    def execute(self, requests: list) -> list:
        # A batch whose clients all gave up while queued costs no (simulated) compute.
        if self.delay_s and not all(self._cancelled(r) for r in requests):
            time.sleep(self.delay_s)
        arrays: list[np.ndarray | None] = []
        errors: list[str] = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            x = None if tensor is None else tensor.as_numpy()
            if self.delay_s and self._cancelled(request):
                arrays.append(None)
                errors.append("request cancelled by the client before it was computed")
            elif x is None or x.ndim != 2 or x.shape[1] != self.n_features:
                arrays.append(None)
                errors.append(f"input '{self.input_name}' must be [batch, {self.n_features}] FP32")
            else:
                arrays.append(x)
                errors.append("")

        valid = [a for a in arrays if a is not None]
        outputs: list[np.ndarray] = []
        if valid:
            batch = valid[0] if len(valid) == 1 else np.concatenate(valid, axis=0)
            outputs = self._forward(batch.astype(np.float32, copy=False))

        responses = []
        offset = 0
        for x, error in zip(arrays, errors, strict=True):
            if x is None:
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(error))
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
