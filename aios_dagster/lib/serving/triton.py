"""Dagster resource for batch inference against one or more Triton replicas over gRPC.

gRPC because one ``tritonclient.grpc`` client can be shared across threads (the HTTP client is
gevent-based and cannot). The work is done by modules of one job each; this one holds the
settings and the public methods:

* ``inference``: chunking, concurrency, version pinning, failover;
* ``retrying``: the one retry layer (tenacity) with its time budget;
* ``breaker``: the per-replica circuit breakers;
* ``admin``: readiness, model loading, config reads;
* ``shared_memory`` / ``channels``: the two transports' resources;
* ``errors``: transient versus permanent (``is_permanent`` for asset code).

The breaker state lives in a private attribute of the resource *instance*. Dagster builds
resource instances per run (per step process with the multiprocess executor), so it spans every
call of one run, never leaks between runs and needs no module-level state.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field, PrivateAttr

from aios_dagster.lib.serving import admin
from aios_dagster.lib.serving.admin import labels_from_config
from aios_dagster.lib.serving.breaker import BreakerState, ReplicaBoard, ReplicaHealth
from aios_dagster.lib.serving.errors import (
    TritonInferenceError,
    TritonPermanentError,
    TritonTransientError,
    is_permanent,
)
from aios_dagster.lib.serving.inference import CallSettings, InferenceResult, run_inference
from aios_dagster.lib.serving.model_repository import DEFAULT_INPUT_NAME
from aios_dagster.lib.serving.retrying import RetryBudget

__all__ = [
    "DEFAULT_INPUT_NAME",
    "BreakerState",
    "InferenceResult",
    "ReplicaHealth",
    "TritonInferenceError",
    "TritonPermanentError",
    "TritonResource",
    "TritonTransientError",
    "is_permanent",
    "labels_from_config",
]


class TritonResource(dg.ConfigurableResource):
    """Batch inference against Triton replicas over gRPC: chunking, concurrency, failover."""

    url: str = Field(
        default="127.0.0.1:8001",
        description="Triton gRPC endpoint, host:port (the only replica unless urls is set).",
    )
    urls: list[str] | None = Field(
        default=None,
        description="Replica gRPC endpoints (host:port) serving the same model repository; "
        "when set, chunks are spread over them with failover, and url is ignored.",
    )
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
        default=10,
        description="Retry rounds of a request after it failed transiently on every replica "
        "(0 = no retry); failover to another replica does not count.",
    )
    retry_backoff_s: float = Field(
        default=0.25, description="First retry delay; doubles per retry, with jitter."
    )
    retry_max_backoff_s: float = Field(
        default=5.0, description="Longest wait between two retry rounds."
    )
    retry_total_s: float = Field(
        default=60.0,
        description="Total time one call may spend retrying: long enough to ride through a "
        "server restart, the only retry of Triton calls (assets do not retry them again).",
    )
    breaker_failure_threshold: int = Field(
        default=5,
        description="Consecutive transient failures after which a replica is skipped.",
    )
    breaker_reset_s: float = Field(
        default=5.0,
        description="How long an open breaker skips its replica before one trial request.",
    )
    shared_memory: bool = Field(
        default=False,
        description="Pass tensors through POSIX shared memory (/dev/shm) instead of inside the "
        "gRPC messages (faster against a server on this host; bench/inference_batch.py). "
        "Only for replicas that share this host's /dev/shm (a local server, a sidecar).",
    )

    # A private attribute because the resource itself is a frozen pydantic model.
    _board: ReplicaBoard = PrivateAttr(default_factory=ReplicaBoard)

    def replica_urls(self) -> list[str]:
        """The effective replica list: ``urls`` (deduplicated, in order) or ``[url]``."""
        return list(dict.fromkeys(self.urls)) if self.urls else [self.url]

    def replica_health(self) -> list[ReplicaHealth]:
        """Breaker state of every replica as this resource instance has seen it."""
        return self._board.snapshot(self.replica_urls(), self.breaker_reset_s)

    def retry_budget(self) -> RetryBudget:
        return RetryBudget(
            max_retries=self.max_retries,
            backoff_s=self.retry_backoff_s,
            max_backoff_s=self.retry_max_backoff_s,
            total_s=self.retry_total_s,
        )

    def _settings(self) -> CallSettings:
        """The validated settings of one call (they are config, so errors name the field)."""
        if self.max_batch_rows < 1 or self.max_concurrency < 1:
            raise ValueError("max_batch_rows and max_concurrency must be >= 1")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be > 0")
        if self.breaker_failure_threshold < 1 or self.breaker_reset_s < 0:
            raise ValueError("breaker_failure_threshold must be >= 1, breaker_reset_s >= 0")
        if self.urls is not None and (not self.urls or not all(u.strip() for u in self.urls)):
            raise ValueError("urls, when set, must list at least one non-empty host:port")
        budget = self.retry_budget()
        budget.validate()
        return CallSettings(
            request_timeout_s=self.request_timeout_s,
            max_batch_rows=self.max_batch_rows,
            max_concurrency=self.max_concurrency,
            breaker_failure_threshold=self.breaker_failure_threshold,
            breaker_reset_s=self.breaker_reset_s,
            shared_memory=self.shared_memory,
            retry=budget,
        )

    # -- server / model management -----------------------------------------------------------
    def wait_until_ready(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Block until at least one replica is live and ready; url -> "ready" or why not.

        Replicas that are down are logged and returned. A replica that answers ready gets its
        breaker closed. ``TimeoutError`` naming every URL if none became ready in time.
        """
        return admin.wait_until_ready(self.replica_urls(), self._board, timeout_s)

    def load_model(self, model_name: str, timeout_s: float = 120.0) -> list[str]:
        """Load (or reload, picking up new versions) on every reachable replica; wait ready.

        In explicit model-control mode this is how a published version goes live. Returns the
        replicas the model is now ready on; see ``admin.load_model`` for partial failures.
        """
        settings = self._settings()
        return admin.load_model(
            self.replica_urls(), self._board, model_name, timeout_s, settings.retry
        )

    def get_model_config(self, model_name: str) -> dict[str, Any]:
        """The server's view of the model config, as a JSON-style dict (retried like infer).

        Named ``get_model_config`` because pydantic (under ``ConfigurableResource``) reserves
        the attribute ``model_config`` for its own settings.
        """
        settings = self._settings()
        return admin.read_model_config(
            self.replica_urls(),
            self._board,
            model_name,
            settings.request_timeout_s,
            settings.breaker_reset_s,
            settings.retry,
        )

    def model_labels(self, model_name: str) -> dict[str, tuple[str, ...]]:
        """Head name -> labels, from the ``labels_<head>`` config parameters, in output order."""
        return labels_from_config(self.get_model_config(model_name))

    # -- inference ---------------------------------------------------------------------------
    def infer(
        self,
        model_name: str,
        features: np.ndarray,
        output_names: list[str],
        *,
        model_version: str = "",
        input_name: str = DEFAULT_INPUT_NAME,
    ) -> InferenceResult:
        """Score ``features`` (n_rows, n_features) and return the requested outputs in row order.

        ``input_name`` is the model's input tensor (the catalog's ``input_tensor``).
        ``model_version=""`` means whatever the server's policy picks (the newest version); the
        version that answered is in ``InferenceResult.model_version`` and is the same for all
        rows, whichever replica answered them. Zero rows sends no request and returns (0, 0)
        arrays (the label count is only known to the server; use ``model_labels`` if needed).
        """
        settings = self._settings()
        if not output_names:
            raise ValueError("output_names must name at least one output")
        x = np.asarray(features)
        if x.ndim != 2:
            raise TritonPermanentError(
                f"model {model_name!r} version {model_version or '<latest>'}: features must be "
                f"a 2-D (n_rows, n_features) matrix, given shape {x.shape}"
            )
        if x.shape[0] == 0:
            return InferenceResult(
                outputs={name: np.empty((0, 0), dtype=np.float32) for name in output_names},
                model_name=model_name,
                model_version=model_version,
                requests=0,
                retries=0,
                latencies_ms=[],
            )
        return run_inference(
            self.replica_urls(),
            self._board,
            settings,
            model_name,
            np.ascontiguousarray(x, dtype=np.float32),
            output_names,
            model_version,
            input_name,
        )
