"""Dagster resource for batch inference against a Triton server over gRPC.

Why the client does what it does (numbers from STACK-NOTES, 2 CPU cores): per-request
overhead caps a Triton server at a few thousand requests/s, so throughput for batch scoring
comes from *client-side* batching (``max_batch_rows`` rows per request, which must not exceed
the model's ``max_batch_size``) and a few requests in flight (``max_concurrency``) to overlap
serialisation, network and compute. gRPC is used because one ``tritonclient.grpc`` client can
be shared across threads (the HTTP client is gevent-based and cannot).

Guarantees ``infer`` gives a Dagster asset:

* rows come back in input order;
* **one result is one model version**: unless a version is pinned, the first chunk is sent
  alone and the version that answered it is pinned for every other chunk, so a version loaded
  mid-call can never mix two models' outputs in one result;
* transient failures (server restarting, overloaded, a deadline) are retried per chunk with
  exponential backoff and jitter; input errors fail at once, naming the model and the shapes;
* nothing touches the network until a method is called, and every client is closed.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import tritonclient.grpc as grpcclient
from pydantic import Field
from tritonclient.utils import InferenceServerException

INPUT_NAME = "features"

_TRANSIENT_STATUSES = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
        "StatusCode.RESOURCE_EXHAUSTED",
    }
)
_INVALID_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND"})
_TRANSIENT_MARKERS = ("connection", "connect to", "socket closed", "broken pipe")


class TritonInferenceError(RuntimeError):
    """A Triton call failed; the message names the model, the version and what failed."""


def _status(exc: InferenceServerException) -> str:
    return str(exc.status() or "")


def _is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, InferenceServerException):
        return False
    status = _status(exc)
    if status in _INVALID_STATUSES:
        return False
    if status in _TRANSIENT_STATUSES:
        return True
    message = str(exc.message() or "").lower()
    return any(marker in message for marker in _TRANSIENT_MARKERS)


@dataclass(frozen=True)
class InferenceResult:
    """Outputs of one ``TritonResource.infer`` call, with what it took to get them."""

    outputs: dict[str, np.ndarray]  # output name -> array, rows in input order
    model_name: str
    model_version: str
    requests: int
    retries: int
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _ChunkResult:
    arrays: dict[str, np.ndarray]
    version: str
    latency_ms: float
    retries: int


def labels_from_config(config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Head name -> labels from a model config's ``labels_<head>`` parameters, in output order.

    Pure, so a caller that already read the config (to check its signature) reuses it.
    """
    params: dict[str, dict[str, str]] = config.get("parameters", {})
    heads = [str(out["name"]).removesuffix("_probs") for out in config.get("output", [])] + [
        key.removeprefix("labels_") for key in params if key.startswith("labels_")
    ]
    labels: dict[str, tuple[str, ...]] = {}
    for head in heads:
        value = params.get(f"labels_{head}", {}).get("string_value")
        if value is not None and head not in labels:
            labels[head] = tuple(value.split(","))
    return labels


class TritonResource(dg.ConfigurableResource):
    """Batch inference against Triton over gRPC: chunking, bounded concurrency, retries."""

    url: str = Field(default="127.0.0.1:8001", description="Triton gRPC endpoint, host:port.")
    metrics_url: str | None = Field(
        default=None,
        description="Triton metrics endpoint host:port; when set, runs report server-side time.",
    )
    ready_timeout_s: float = Field(
        default=30.0,
        description="How long a job waits for the server to be ready before failing clearly.",
    )
    request_timeout_s: float = Field(
        default=30.0, description="End-to-end deadline of each gRPC request, in seconds."
    )
    max_batch_rows: int = Field(
        default=1024,
        description="Rows per inference request; must not exceed the model's max_batch_size.",
    )
    max_concurrency: int = Field(default=4, description="Requests in flight at once.")
    max_retries: int = Field(
        default=4, description="Retries of a chunk after a transient error (0 = no retry)."
    )
    retry_backoff_s: float = Field(
        default=0.25, description="First retry delay; doubles per retry, with jitter."
    )

    # -- plumbing ----------------------------------------------------------------------------
    def _client(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(url=self.url)

    def _validate_settings(self) -> None:
        if self.max_batch_rows < 1 or self.max_concurrency < 1:
            raise ValueError("max_batch_rows and max_concurrency must be >= 1")
        if self.max_retries < 0 or self.retry_backoff_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_retries/retry_backoff_s must be >= 0, request_timeout_s > 0")

    # -- server / model management -----------------------------------------------------------
    def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the server is live and ready; ``TimeoutError`` naming the URL if not.

        A fresh client per poll: a gRPC channel that failed to connect backs off its own
        reconnects (up to minutes), which would hide a server that has just come up.
        """
        deadline = time.monotonic() + timeout_s
        last_error = "not ready"
        while True:
            with self._client() as client:
                try:
                    if client.is_server_live(client_timeout=2.0) and client.is_server_ready(
                        client_timeout=2.0
                    ):
                        return
                    last_error = "server live but not ready"
                except InferenceServerException as exc:
                    last_error = str(exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Triton at {self.url} was not live and ready within {timeout_s:.1f}s "
                    f"(last answer: {last_error})"
                )
            time.sleep(0.2)

    def load_model(self, model_name: str, timeout_s: float = 120.0) -> None:
        """Load (or reload, picking up newly published versions) and wait until it is ready.

        In explicit model-control mode this is how a published version goes live. If the
        reload fails, Triton keeps serving what it had loaded, and this raises.
        """
        with self._client() as client:
            try:
                client.load_model(model_name, client_timeout=timeout_s)
            except InferenceServerException as exc:
                raise TritonInferenceError(
                    f"model {model_name!r} (all versions per its version_policy): load request "
                    f"to {self.url} failed: {exc}"
                ) from exc
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if client.is_model_ready(model_name, client_timeout=5.0):
                        return
                except InferenceServerException:
                    pass
                if time.monotonic() >= deadline:
                    raise TritonInferenceError(
                        f"model {model_name!r} (latest version) was loaded on {self.url} but "
                        f"not ready within {timeout_s:.1f}s"
                    )
                time.sleep(0.1)

    def get_model_config(self, model_name: str) -> dict[str, Any]:
        """The server's view of the model config, as a JSON-style dict.

        Named ``get_model_config`` because pydantic (under ``ConfigurableResource``) reserves
        the attribute ``model_config`` for its own settings.
        """
        with self._client() as client:
            try:
                response = client.get_model_config(
                    model_name, as_json=True, client_timeout=self.request_timeout_s
                )
            except InferenceServerException as exc:
                raise TritonInferenceError(
                    f"model {model_name!r} (latest version): reading its config from "
                    f"{self.url} failed: {exc}"
                ) from exc
        return dict(response.get("config", response))

    def model_labels(self, model_name: str) -> dict[str, tuple[str, ...]]:
        """Head name -> labels, from the ``labels_<head>`` config parameters, in output order."""
        return labels_from_config(self.get_model_config(model_name))

    # -- inference ---------------------------------------------------------------------------
    def _infer_chunk(
        self,
        client: grpcclient.InferenceServerClient,
        model_name: str,
        model_version: str,
        output_names: list[str],
        chunk: np.ndarray,
        index: int,
        rows: tuple[int, int],
        rng: random.Random,
    ) -> _ChunkResult:
        what = (
            f"model {model_name!r} version {model_version or '<latest>'} at {self.url}, "
            f"chunk {index} (rows {rows[0]}:{rows[1]})"
        )
        retries = 0
        infer_input = grpcclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        infer_input.set_data_from_numpy(chunk)
        requested = [grpcclient.InferRequestedOutput(name) for name in output_names]
        while True:
            started = time.perf_counter()
            try:
                if retries == 0:
                    result = client.infer(
                        model_name,
                        [infer_input],
                        model_version=model_version,
                        outputs=requested,
                        client_timeout=self.request_timeout_s,
                    )
                else:
                    # Retries use a fresh channel: the shared one may sit in gRPC's reconnect
                    # backoff and fail fast even after the server is back.
                    with self._client() as retry_client:
                        result = retry_client.infer(
                            model_name,
                            [infer_input],
                            model_version=model_version,
                            outputs=requested,
                            client_timeout=self.request_timeout_s,
                        )
            except InferenceServerException as exc:
                if not _is_transient(exc):
                    raise TritonInferenceError(
                        f"{what} was rejected (not retried): given features of shape "
                        f"{tuple(chunk.shape)} dtype float32; server said: {exc}"
                    ) from exc
                if retries >= self.max_retries:
                    raise TritonInferenceError(
                        f"{what} failed after {retries} retries: {exc}"
                    ) from exc
                delay = self.retry_backoff_s * (2**retries)
                retries += 1
                dg.get_dagster_logger(__name__).warning(
                    "%s: transient error (%s); retry %d/%d in %.2fs",
                    what,
                    _status(exc) or "unknown status",
                    retries,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay * (0.5 + rng.random()))
                continue
            latency_ms = (time.perf_counter() - started) * 1000.0
            arrays: dict[str, np.ndarray] = {}
            for name in output_names:
                array = result.as_numpy(name)
                if array is None:
                    raise TritonInferenceError(f"{what}: response has no output {name!r}")
                if array.shape[0] != chunk.shape[0]:
                    raise TritonInferenceError(
                        f"{what}: output {name!r} has {array.shape[0]} rows, "
                        f"expected {chunk.shape[0]}"
                    )
                arrays[name] = array
            version = str(result.get_response().model_version)
            return _ChunkResult(arrays, version, latency_ms, retries)

    def infer(
        self,
        model_name: str,
        features: np.ndarray,
        output_names: list[str],
        *,
        model_version: str = "",
    ) -> InferenceResult:
        """Score ``features`` (n_rows, n_features) and return the requested outputs in row order.

        ``model_version=""`` means whatever the server's policy picks (the newest version); the
        version that answered is in ``InferenceResult.model_version`` and is the same for all
        rows. Zero rows sends no request and returns (0, 0) arrays (the label count is only
        known to the server; use ``model_labels`` if you need it).
        """
        self._validate_settings()
        if not output_names:
            raise ValueError("output_names must name at least one output")
        x = np.asarray(features)
        if x.ndim != 2:
            raise TritonInferenceError(
                f"model {model_name!r} version {model_version or '<latest>'}: features must be "
                f"a 2-D (n_rows, n_features) matrix, given shape {x.shape}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        n_rows = x.shape[0]
        if n_rows == 0:
            return InferenceResult(
                outputs={name: np.empty((0, 0), dtype=np.float32) for name in output_names},
                model_name=model_name,
                model_version=model_version,
                requests=0,
                retries=0,
                latencies_ms=[],
            )

        bounds = [
            (start, min(start + self.max_batch_rows, n_rows))
            for start in range(0, n_rows, self.max_batch_rows)
        ]
        rng = random.Random()
        results: list[_ChunkResult | None] = [None] * len(bounds)
        with self._client() as client:

            def run(index: int, version: str) -> _ChunkResult:
                a, b = bounds[index]
                return self._infer_chunk(
                    client, model_name, version, output_names, x[a:b], index, (a, b), rng
                )

            first = run(0, model_version)
            results[0] = first
            pinned = model_version or first.version
            if len(bounds) > 1:
                workers = min(self.max_concurrency, len(bounds) - 1)
                with ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="triton-infer"
                ) as pool:
                    futures: dict[Future[_ChunkResult], int] = {
                        pool.submit(run, i, pinned): i for i in range(1, len(bounds))
                    }
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    failed = [f for f in done if f.exception() is not None]
                    if failed:
                        for future in futures:
                            future.cancel()
                        # Report the earliest failing chunk; queued chunks were cancelled.
                        error = min(failed, key=futures.__getitem__).exception()
                        assert error is not None
                        raise error
                    for future, i in futures.items():
                        results[i] = future.result()

        chunks = [r for r in results if r is not None]
        # Always a fresh writable array (a single response's as_numpy view is read-only).
        outputs = {
            name: np.concatenate([r.arrays[name] for r in chunks], axis=0) for name in output_names
        }
        return InferenceResult(
            outputs=outputs,
            model_name=model_name,
            model_version=first.version,
            requests=len(chunks),
            retries=sum(r.retries for r in chunks),
            latencies_ms=[r.latency_ms for r in chunks],
        )
