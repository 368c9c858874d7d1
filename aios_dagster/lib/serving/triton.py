"""Dagster resource for batch inference against one or more Triton replicas over gRPC.

Why the client does what it does (numbers from STACK-NOTES, 2 CPU cores): per-request
overhead caps a Triton server at a few thousand requests/s, so throughput for batch scoring
comes from *client-side* batching (``max_batch_rows`` rows per request, which must not exceed
the model's ``max_batch_size``) and a few requests in flight (``max_concurrency``) to overlap
serialisation, network and compute. gRPC is used because one ``tritonclient.grpc`` client can
be shared across threads (the HTTP client is gevent-based and cannot).

Guarantees ``infer`` gives a Dagster asset:

* rows come back in input order, each row exactly once;
* **one result is one model version**: unless a version is pinned, the first chunk is sent
  alone and the version that answered it is pinned for every other chunk, on every replica, so
  a version loaded mid-call (or a replica that lags behind) can never mix two models' outputs in
  one result; a replica that does not serve the pinned version is a clear error;
* chunks are spread round-robin over the healthy replicas (``urls``); a transient failure
  (server restarting, overloaded, a deadline) is first retried at once on *another* replica
  (failover), and only when every replica failed the chunk does it back off (exponential, with
  jitter) for at most ``max_retries`` rounds; input errors fail at once, naming the model and
  the shapes, and a model that is not loaded fails at once, naming the model;
* a per-replica **circuit breaker** remembers failures across calls: a replica that failed
  ``breaker_failure_threshold`` times in a row is skipped for ``breaker_reset_s``, after which
  one trial request decides whether it is back; when every replica is open, ``infer`` fails
  fast instead of sleeping through a backoff loop against servers known to be down;
* nothing touches the network until a method is called, and every client is closed.

``shared_memory=True`` (opt-in) moves the tensors through POSIX shared memory registered with
the server instead of inside the gRPC messages: about 1.3-1.6x rows/s against a server on the
same host on 2 cores (``bench/inference_batch.py``), because protobuf serialisation and the
loopback copy of ~1 MB per request go away. It is not the default because remote replicas
(the production deployment) cannot map this host's ``/dev/shm``.

Scope of the breaker state: it lives in a pydantic private attribute of the resource
*instance*. Dagster builds resource instances per run (per step process with the multiprocess
executor), so the breaker spans every ``infer`` call of one run/process, never leaks between
runs, and needs no module-level state. Re-instantiating the resource starts with all breakers
closed, which is the safe default (the first calls re-learn what is down).
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from pydantic import Field, PrivateAttr
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
_TRANSIENT_MARKERS = (
    "connection",
    "connect to",
    "socket closed",
    "broken pipe",
    "stream removed",
    "rst_stream",
    "goaway",
)
# Triton answers "Request for unknown model: 'm' has no available versions" (NOT_FOUND) when a
# model is unloaded and "... version 1 is not at ready state" (UNAVAILABLE!) for a pinned
# version that went away: a state of the deployment, not of the network, so never retried.
_MODEL_UNAVAILABLE_MARKER = "unknown model"
# A server that restarted has forgotten our shared-memory registrations (NOT_FOUND).
_SHM_FORGOTTEN_MARKER = "unable to find shared memory region"
_SHM_RELEASE_WAIT_S = 2.0
_EXPECTED_SHAPE = re.compile(r"expected \[([^\]]*)\]", re.IGNORECASE)

BreakerState = Literal["closed", "open", "half_open"]
_Outcome = Literal["transient", "invalid", "model_unavailable"]
_logger = dg.get_dagster_logger(__name__)


class TritonInferenceError(RuntimeError):
    """A Triton call failed; the message names the model, the version and what failed."""


def _status(exc: InferenceServerException) -> str:
    return str(exc.status() or "")


def _classify(exc: InferenceServerException) -> _Outcome:
    """Which of the three things a failed request means (decides retry and breaker)."""
    message = str(exc.message() or "").lower()
    if _MODEL_UNAVAILABLE_MARKER in message:
        return "model_unavailable"
    if _SHM_FORGOTTEN_MARKER in message:
        return "transient"  # the server restarted between registering a region and using it
    status = _status(exc)
    if status in _INVALID_STATUSES:
        return "invalid"
    if status in _TRANSIENT_STATUSES or any(marker in message for marker in _TRANSIENT_MARKERS):
        return "transient"
    return "invalid"


def _is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying on the same or another replica."""
    return isinstance(exc, InferenceServerException) and _classify(exc) == "transient"


@dataclass(frozen=True)
class InferenceResult:
    """Outputs of one ``TritonResource.infer`` call, with what it took to get them.

    ``retries`` counts backoff rounds (what ``max_retries`` bounds) summed over chunks;
    ``failovers`` counts immediate re-sends of a chunk to another replica;
    ``requests_by_replica`` counts the chunks each replica answered.
    """

    outputs: dict[str, np.ndarray]  # output name -> array, rows in input order
    model_name: str
    model_version: str
    requests: int
    retries: int
    latencies_ms: list[float] = field(default_factory=list)
    failovers: int = 0
    requests_by_replica: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaHealth:
    """Read-only snapshot of one replica's circuit breaker (for tests and asset metadata)."""

    url: str
    state: BreakerState
    consecutive_failures: int
    retry_in_s: float | None  # seconds until a trial request is allowed; None unless open
    requests: int  # requests sent to it by this resource instance
    transient_failures: int  # of which failed transiently
    last_error: str


@dataclass(frozen=True)
class _ChunkResult:
    arrays: dict[str, np.ndarray]
    version: str
    latency_ms: float
    retries: int
    failovers: int
    url: str


@dataclass
class _Replica:
    url: str
    consecutive_failures: int = 0
    opened_at: float | None = None  # monotonic time the breaker (re)opened; None = closed
    trial_in_flight: bool = False
    requests: int = 0
    transient_failures: int = 0
    last_error: str = ""


class _ReplicaBoard:
    """Per-replica circuit breakers plus the round-robin cursor, shared by all threads.

    One ``threading.Condition`` guards everything: the state is tiny and every operation is
    O(replicas), so a single lock is simpler than per-replica locks and never contended for
    long. Threads that find only a half-open replica whose trial is still in flight wait on
    the condition for the trial's verdict instead of failing or busy-looping.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._replicas: dict[str, _Replica] = {}
        self._cursor = 0

    def _get(self, url: str) -> _Replica:
        replica = self._replicas.get(url)
        if replica is None:
            replica = self._replicas[url] = _Replica(url)
        return replica

    def acquire(
        self, urls: list[str], exclude: set[str], reset_s: float, wait_s: float
    ) -> str | None:
        """The next usable replica not in ``exclude`` (round-robin), or None if all are open.

        A closed replica is usable; an open one whose reset time has passed is usable by
        exactly one caller (the half-open trial). Waits up to ``wait_s`` while the only
        candidates are half-open replicas whose trial is still running.
        """
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                now = time.monotonic()
                pending = False
                n = len(urls)
                for step in range(n):
                    url = urls[(self._cursor + step) % n]
                    if url in exclude:
                        continue
                    replica = self._get(url)
                    if replica.opened_at is not None:
                        if replica.trial_in_flight:
                            pending = True
                            continue
                        if now < replica.opened_at + reset_s:
                            continue
                        replica.trial_in_flight = True  # half-open: this caller is the trial
                    self._cursor = (self._cursor + step + 1) % n
                    replica.requests += 1
                    return url
                if not pending or now >= deadline:
                    return None
                self._cond.wait(timeout=deadline - now)

    def record_success(self, url: str) -> None:
        """The replica answered (even with an input error): close its breaker."""
        with self._cond:
            replica = self._get(url)
            if replica.opened_at is not None:
                _logger.info("Triton replica %s answered again: circuit breaker closed", url)
            replica.consecutive_failures = 0
            replica.opened_at = None
            replica.trial_in_flight = False
            self._cond.notify_all()

    def record_failure(self, url: str, error: str, threshold: int, reset_s: float) -> None:
        """A transient failure: count it, open the breaker at ``threshold`` in a row."""
        with self._cond:
            replica = self._get(url)
            replica.consecutive_failures += 1
            replica.transient_failures += 1
            replica.last_error = error
            if replica.trial_in_flight or (
                replica.opened_at is None and replica.consecutive_failures >= threshold
            ):
                replica.opened_at = time.monotonic()
                replica.trial_in_flight = False
                _logger.warning(
                    "Triton replica %s: circuit breaker open after %d consecutive transient "
                    "failures; skipped for %.1fs (last error: %s)",
                    url,
                    replica.consecutive_failures,
                    reset_s,
                    error,
                )
            self._cond.notify_all()

    def release(self, url: str) -> None:
        """A request ended without a verdict on the replica (a local error): free the trial."""
        with self._cond:
            self._get(url).trial_in_flight = False
            self._cond.notify_all()

    def snapshot(self, urls: list[str], reset_s: float) -> list[ReplicaHealth]:
        with self._cond:
            now = time.monotonic()
            health = []
            for url in urls:
                r = self._get(url)
                state: BreakerState = "closed"
                retry_in: float | None = None
                if r.opened_at is not None:
                    retry_in = max(0.0, r.opened_at + reset_s - now)
                    state = "half_open" if retry_in == 0.0 or r.trial_in_flight else "open"
                health.append(
                    ReplicaHealth(
                        url=url,
                        state=state,
                        consecutive_failures=r.consecutive_failures,
                        retry_in_s=retry_in,
                        requests=r.requests,
                        transient_failures=r.transient_failures,
                        last_error=r.last_error,
                    )
                )
            return health


class _Channels:
    """The gRPC clients of one ``infer`` call: one shared per replica, replaced on failure.

    A channel that saw its server die sits in gRPC's reconnect backoff (up to minutes) and
    fails every request fast even after the server is back; those fast failures would also
    trip the breaker of a healthy replica. So after a transient failure the replica's client is
    retired (not closed: other threads may be mid-call on it) and the next request opens a
    fresh one. Everything is closed when the call ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, grpcclient.InferenceServerClient] = {}
        self._all: list[grpcclient.InferenceServerClient] = []

    def get(self, url: str) -> grpcclient.InferenceServerClient:
        with self._lock:
            client = self._current.get(url)
            if client is None:
                client = self._current[url] = grpcclient.InferenceServerClient(url=url)
                self._all.append(client)
            return client

    def retire(self, url: str, client: grpcclient.InferenceServerClient) -> None:
        with self._lock:
            if self._current.get(url) is client:
                del self._current[url]

    def close(self) -> None:
        with self._lock:
            clients, self._all, self._current = self._all, [], {}
        for client in clients:
            client.close()


@dataclass
class _ShmSlot:
    """One shared-memory region: the input chunk at offset 0, then each output."""

    name: str
    handle: Any  # tritonclient.utils.shared_memory.SharedMemoryRegion
    byte_size: int
    registered: set[str] = field(default_factory=set)  # replicas that know this region

    @property
    def key(self) -> str:
        return f"/{self.name}"


def _unregister(client: grpcclient.InferenceServerClient, name: str, deadline: float) -> None:
    """Unregister a region, waiting (until ``deadline``) while the server still holds it.

    Triton releases a region shortly *after* the response went out ("Cannot unregister ...
    it is currently in use"); giving up at once would leak the server-side mapping. One
    deadline for the whole call bounds the wait even with many retired slots.
    """
    while True:
        try:
            client.unregister_system_shared_memory(name, client_timeout=2.0)
            return
        except InferenceServerException as exc:
            busy = "in use" in str(exc.message() or "").lower()
            if not busy or time.monotonic() >= deadline:
                # A dead or restarted server holds no registration; a stuck one is logged.
                if busy:
                    _logger.warning("shared-memory region %s still in use: %s", name, exc)
                return
        time.sleep(0.01)


class _ShmPool:
    """Shared-memory slots of one ``infer`` call (``TritonResource.shared_memory``).

    Why slots and their rules:

    * a region is created and registered with a replica once per call, not per request (a
      registration is an RPC, which would cost what shared memory saves);
    * a slot is leased by one request at a time and returned only after its outputs were
      copied out, so concurrent chunks never share bytes;
    * a slot whose request *failed* is retired, never reused: after a client-side deadline the
      server may still run the request and write its outputs into the region later, which
      would silently overwrite another chunk's rows;
    * everything is unregistered and unlinked when the call ends, retired slots included.
    """

    def __init__(
        self, n_slots: int, in_bytes: int, out_layout: dict[str, tuple[tuple[int, ...], Any]]
    ) -> None:
        self.in_bytes = in_bytes
        self.out_layout = out_layout  # output -> (shape per max_batch_rows chunk, dtype)
        self.out_offsets: dict[str, int] = {}
        offset = in_bytes
        for name, (shape, dtype) in out_layout.items():
            self.out_offsets[name] = offset
            offset += int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.byte_size = offset
        self._prefix = f"aios_infer_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        self._lock = threading.Lock()
        self._all: list[_ShmSlot] = []
        self._free: queue.SimpleQueue[_ShmSlot] = queue.SimpleQueue()
        try:
            for _ in range(n_slots):  # one per worker thread up front; more after failures
                self._free.put(self._new_slot())
        except BaseException:
            # /dev/shm full or similar: unlink what was created before giving up.
            for slot in self._all:
                with contextlib.suppress(Exception):
                    shm.destroy_shared_memory_region(slot.handle)
            raise

    def _new_slot(self) -> _ShmSlot:
        with self._lock:
            name = f"{self._prefix}_{len(self._all)}"
            handle = shm.create_shared_memory_region(name, f"/{name}", self.byte_size)
            slot = _ShmSlot(name, handle, self.byte_size)
            self._all.append(slot)
        return slot

    def lease(self) -> _ShmSlot:
        """A free slot, or a new one: never blocks, so a slot lost to an error cannot hang."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self._new_slot()

    def give_back(self, slot: _ShmSlot) -> None:
        self._free.put(slot)

    def retire(self, slot: _ShmSlot) -> None:
        """Never lease ``slot`` again (it stays allocated until ``close``); see the class doc."""

    def close(self, channels: _Channels) -> None:
        with self._lock:
            slots, self._all = self._all, []
        deadline = time.monotonic() + _SHM_RELEASE_WAIT_S
        for slot in slots:
            # One slot failing to release must not leak the others.
            with contextlib.suppress(Exception):
                for url in slot.registered:
                    _unregister(channels.get(url), slot.name, deadline)
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(slot.handle)


class _Stopped(Exception):
    """Another chunk already failed the call; this one gives up quietly."""


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
        default=4,
        description="Backoff rounds for a chunk after it failed transiently on every "
        "replica (0 = no retry); failover to another replica does not count.",
    )
    retry_backoff_s: float = Field(
        default=0.25, description="First retry delay; doubles per retry, with jitter."
    )
    breaker_failure_threshold: int = Field(
        default=5,
        description="Consecutive transient failures after which a replica is skipped.",
    )
    breaker_reset_s: float = Field(
        default=30.0,
        description="How long an open breaker skips its replica before one trial request.",
    )

    shared_memory: bool = Field(
        default=False,
        description="Pass tensors through POSIX shared memory (/dev/shm) instead of inside the "
        "gRPC messages: ~1.4x rows/s against a server on this host (bench/inference_batch.py). "
        "Only for replicas that share this host's /dev/shm (a local server, a sidecar).",
    )

    # Breaker state per resource instance (see the module docstring for its scope). A private
    # attribute because the resource itself is a frozen pydantic model.
    _board: _ReplicaBoard = PrivateAttr(default_factory=_ReplicaBoard)

    # -- plumbing ----------------------------------------------------------------------------
    def replica_urls(self) -> list[str]:
        """The effective replica list: ``urls`` (deduplicated, in order) or ``[url]``."""
        return list(dict.fromkeys(self.urls)) if self.urls else [self.url]

    def replica_health(self) -> list[ReplicaHealth]:
        """Breaker state of every replica as this resource instance has seen it."""
        return self._board.snapshot(self.replica_urls(), self.breaker_reset_s)

    def _validate_settings(self) -> None:
        if self.max_batch_rows < 1 or self.max_concurrency < 1:
            raise ValueError("max_batch_rows and max_concurrency must be >= 1")
        if self.max_retries < 0 or self.retry_backoff_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_retries/retry_backoff_s must be >= 0, request_timeout_s > 0")
        if self.breaker_failure_threshold < 1 or self.breaker_reset_s < 0:
            raise ValueError("breaker_failure_threshold must be >= 1, breaker_reset_s >= 0")
        if self.urls is not None and (not self.urls or not all(u.strip() for u in self.urls)):
            raise ValueError("urls, when set, must list at least one non-empty host:port")

    def _breaker_error(self, what: str) -> TritonInferenceError:
        """The fail-fast error: every replica's breaker is open; says when each is retried."""
        parts = []
        for h in self.replica_health():
            when = (
                "trial request due now or in flight"
                if not h.retry_in_s
                else f"trial request in {h.retry_in_s:.1f}s"
            )
            parts.append(
                f"{h.url} ({h.consecutive_failures} consecutive transient failures, {when}; "
                f"last error: {h.last_error or 'n/a'})"
            )
        return TritonInferenceError(
            f"{what}: failing fast, circuit breaker open for all {len(parts)} Triton "
            f"replica(s): {'; '.join(parts)}. An open replica gets one trial request "
            f"{self.breaker_reset_s:g}s after it opened; wait_until_ready() closes the breaker "
            f"of a replica that answers ready."
        )

    # -- server / model management -----------------------------------------------------------
    @staticmethod
    def _probe(url: str, timeout_s: float) -> str:
        """``"ready"`` or why not. A fresh client per probe: a channel that failed to connect
        backs off its reconnects (up to minutes), which would hide a server that just came up.
        """
        with grpcclient.InferenceServerClient(url=url) as client:
            try:
                if client.is_server_live(client_timeout=timeout_s) and client.is_server_ready(
                    client_timeout=timeout_s
                ):
                    return "ready"
                return "server live but not ready"
            except InferenceServerException as exc:
                return str(exc)

    def wait_until_ready(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Block until at least one replica is live and ready; url -> "ready" or why not.

        Replicas that are down are logged (a degraded but working deployment should not fail
        a run) and returned. A replica that answers ready gets its breaker closed: readiness is
        fresher evidence than the failures that opened it. ``TimeoutError`` naming every URL
        if no replica became ready in time.
        """
        urls = self.replica_urls()
        deadline = time.monotonic() + timeout_s
        while True:
            status = {url: self._probe(url, 2.0) for url in urls}
            ready = [url for url, answer in status.items() if answer == "ready"]
            if ready:
                for url in ready:
                    self._board.record_success(url)
                down = {url: answer for url, answer in status.items() if answer != "ready"}
                if down:
                    _logger.warning(
                        "Triton: %d of %d replicas ready; down: %s",
                        len(ready),
                        len(urls),
                        "; ".join(f"{u} ({a})" for u, a in down.items()),
                    )
                return status
            if time.monotonic() >= deadline:
                answers = "; ".join(f"{u}: {a}" for u, a in status.items())
                raise TimeoutError(
                    f"Triton at {', '.join(urls)} was not live and ready within "
                    f"{timeout_s:.1f}s (last answer: {answers})"
                )
            time.sleep(0.2)

    def _load_on(self, url: str, model_name: str, timeout_s: float) -> None:
        with grpcclient.InferenceServerClient(url=url) as client:
            client.load_model(model_name, client_timeout=timeout_s)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if client.is_model_ready(model_name, client_timeout=5.0):
                        return
                except InferenceServerException:
                    pass
                if time.monotonic() >= deadline:
                    raise TritonInferenceError(
                        f"model {model_name!r} (latest version) was loaded on {url} but "
                        f"not ready within {timeout_s:.1f}s"
                    )
                time.sleep(0.1)

    def load_model(self, model_name: str, timeout_s: float = 120.0) -> list[str]:
        """Load (or reload, picking up new versions) on every reachable replica; wait ready.

        In explicit model-control mode this is how a published version goes live. Replicas are
        loaded in parallel. An unreachable replica is skipped with a warning (it loads the
        repository when it restarts, and version pinning keeps a lagging replica from mixing
        versions into a result); a replica that answers but fails the load raises, as does
        having no reachable replica. If a reload fails, Triton keeps serving what it had.
        Returns the replicas the model is now ready on.
        """
        urls = self.replica_urls()
        errors: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="triton-load") as pool:
            futures = {url: pool.submit(self._load_on, url, model_name, timeout_s) for url in urls}
            for url, future in futures.items():
                error = future.exception()
                if error is not None:
                    errors[url] = error
        unreachable = {u: e for u, e in errors.items() if _is_transient(e)}
        failed = {u: e for u, e in errors.items() if u not in unreachable}
        loaded = [url for url in urls if url not in errors]
        if failed:
            details = "; ".join(f"{u}: {e}" for u, e in failed.items())
            raise TritonInferenceError(
                f"model {model_name!r} (all versions per its version_policy): load failed on "
                f"{len(failed)} of {len(urls)} replica(s): {details}"
                + (f" (loaded on {', '.join(loaded)})" if loaded else "")
            ) from next(iter(failed.values()))
        if not loaded:
            details = "; ".join(f"{u}: {e}" for u, e in unreachable.items())
            raise TritonInferenceError(
                f"model {model_name!r} (all versions per its version_policy): load request "
                f"failed, no Triton replica reachable: {details}"
            ) from next(iter(unreachable.values()))
        for url in loaded:
            self._board.record_success(url)  # it answered: whatever opened its breaker passed
        if unreachable:
            _logger.warning(
                "model %r loaded on %s; unreachable replicas skipped: %s",
                model_name,
                ", ".join(loaded),
                "; ".join(f"{u} ({e})" for u, e in unreachable.items()),
            )
        return loaded

    def get_model_config(self, model_name: str) -> dict[str, Any]:
        """The server's view of the model config, as a JSON-style dict.

        Asked of the first replica whose breaker is not open, failing over on transient
        errors. Named ``get_model_config`` because pydantic (under ``ConfigurableResource``)
        reserves the attribute ``model_config`` for its own settings.
        """
        urls = self.replica_urls()
        skip = {h.url for h in self.replica_health() if h.state == "open"}
        candidates = [u for u in urls if u not in skip] or urls
        errors: list[str] = []
        last: InferenceServerException | None = None
        for url in candidates:
            with grpcclient.InferenceServerClient(url=url) as client:
                try:
                    response = client.get_model_config(
                        model_name, as_json=True, client_timeout=self.request_timeout_s
                    )
                except InferenceServerException as exc:
                    if not _is_transient(exc):
                        raise TritonInferenceError(
                            f"model {model_name!r} (latest version): reading its config from "
                            f"{url} failed: {exc}"
                        ) from exc
                    errors.append(f"{url}: {exc}")
                    last = exc
                    continue
            return dict(response.get("config", response))
        raise TritonInferenceError(
            f"model {model_name!r} (latest version): reading its config failed on every "
            f"replica: {'; '.join(errors)}"
        ) from last

    def model_labels(self, model_name: str) -> dict[str, tuple[str, ...]]:
        """Head name -> labels, from the ``labels_<head>`` config parameters, in output order."""
        return labels_from_config(self.get_model_config(model_name))

    # -- inference ---------------------------------------------------------------------------
    def _rejected(
        self, what: str, url: str, chunk: np.ndarray, exc: InferenceServerException
    ) -> TritonInferenceError:
        """The input error, worded so the fix is obvious: tensor, expected and given shape."""
        match = _EXPECTED_SHAPE.search(str(exc.message() or ""))
        if match is not None:
            expected = "[" + ", ".join(d.strip() for d in match.group(1).split(",")) + "]"
            return TritonInferenceError(
                f"{what} was rejected by {url} (not retried): input {INPUT_NAME!r} expects "
                f"shape {expected} (batch, features) but was given {tuple(chunk.shape)} "
                f"float32; server said: {exc}"
            )
        return TritonInferenceError(
            f"{what} was rejected by {url} (not retried): given features of shape "
            f"{tuple(chunk.shape)} dtype float32; server said: {exc}"
        )

    @staticmethod
    def _unavailable(
        what: str,
        url: str,
        model_name: str,
        model_version: str,
        pinned_from: str,
        exc: InferenceServerException,
    ) -> TritonInferenceError:
        """The model (or the version this call is bound to) is not loaded on ``url``.

        Not retried and not sent elsewhere: it is a deployment state (unloaded, or replicas
        that disagree on versions), and answering from another replica would hide it.
        """
        if not model_version:
            problem = f"model {model_name!r} is not loaded on replica {url}"
        elif pinned_from:
            problem = (
                f"replica {url} does not serve model {model_name!r} version {model_version}, "
                f"which this call is pinned to (chunk 0 was answered by it on {pinned_from})"
            )
        else:
            problem = (
                f"replica {url} does not serve the requested model {model_name!r} "
                f"version {model_version}"
            )
        return TritonInferenceError(
            f"{what}: {problem}; not retried: load it on every replica "
            f"(TritonResource.load_model) and run again. Server said: {exc}"
        )

    def _infer_via_shm(
        self,
        client: grpcclient.InferenceServerClient,
        url: str,
        slot: _ShmSlot,
        pool: _ShmPool,
        model_name: str,
        model_version: str,
        chunk: np.ndarray,
        output_names: list[str],
    ) -> tuple[str, dict[str, np.ndarray | None]]:
        """One request with its tensors in ``slot``: (answering version, copied outputs).

        Registers the slot with ``url`` on first use, and once more if the server answers that
        it does not know the region (it restarted since). Server errors propagate as
        ``InferenceServerException`` so the caller's failover and breaker logic applies.
        """
        rows = chunk.shape[0]
        shm.set_shared_memory_region(slot.handle, [chunk])
        infer_input = grpcclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        infer_input.set_shared_memory(slot.name, chunk.nbytes)
        requested = []
        shapes: dict[str, tuple[int, ...]] = {}
        for name in output_names:
            tail, dtype = pool.out_layout[name][0][1:], pool.out_layout[name][1]
            shapes[name] = (rows, *tail)
            out = grpcclient.InferRequestedOutput(name)
            out.set_shared_memory(
                slot.name,
                int(np.prod(shapes[name])) * np.dtype(dtype).itemsize,
                offset=pool.out_offsets[name],
            )
            requested.append(out)
        result = None
        while result is None:
            if url not in slot.registered:
                try:
                    client.register_system_shared_memory(
                        slot.name, slot.key, slot.byte_size, client_timeout=self.request_timeout_s
                    )
                except InferenceServerException as exc:
                    if _is_transient(exc):
                        raise
                    raise TritonInferenceError(
                        f"model {model_name!r}: shared_memory=True but replica {url} could not "
                        f"register region {slot.key} ({slot.byte_size} bytes); is the server "
                        f"on this host, sharing its /dev/shm? Server said: {exc}"
                    ) from exc
                slot.registered.add(url)
                fresh = True
            else:
                fresh = False
            try:
                result = client.infer(
                    model_name,
                    [infer_input],
                    model_version=model_version,
                    outputs=requested,
                    client_timeout=self.request_timeout_s,
                )
            except InferenceServerException as exc:
                forgotten = _SHM_FORGOTTEN_MARKER in str(exc.message() or "").lower()
                if not forgotten or fresh:
                    raise
                slot.registered.discard(url)  # the server restarted since we registered
        arrays: dict[str, np.ndarray | None] = {}
        for name in output_names:
            output = result.get_output(name)
            shape = None if output is None else tuple(int(d) for d in output.shape)
            if shape is None:
                arrays[name] = None
                continue
            if shape != shapes[name]:
                raise TritonInferenceError(
                    f"model {model_name!r} at {url}: output {name!r} has shape {shape}, "
                    f"expected {shapes[name]}"
                )
            view = shm.get_contents_as_numpy(
                slot.handle, pool.out_layout[name][1], list(shape), offset=pool.out_offsets[name]
            )
            arrays[name] = np.array(view, copy=True)  # the slot is reused after this returns
            del view
        return str(result.get_response().model_version), arrays

    def _infer_chunk(
        self,
        channels: _Channels,
        model_name: str,
        model_version: str,
        pinned_from: str,
        output_names: list[str],
        chunk: np.ndarray,
        index: int,
        rows: tuple[int, int],
        rng: random.Random,
        stop: threading.Event,
        pool: _ShmPool | None = None,
    ) -> _ChunkResult:
        """Send one chunk: failover across replicas, then back off, at most max_retries."""
        urls = self.replica_urls()
        what = (
            f"model {model_name!r} version {model_version or '<latest>'}, "
            f"chunk {index} (rows {rows[0]}:{rows[1]})"
        )
        infer_input = grpcclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        if pool is None:  # serialised once per chunk, reused by every attempt
            infer_input.set_data_from_numpy(chunk)
        requested = [grpcclient.InferRequestedOutput(name) for name in output_names]
        retries = failovers = 0
        while True:
            tried: set[str] = set()
            errors: list[str] = []
            while True:
                if stop.is_set():
                    raise _Stopped
                url = self._board.acquire(
                    urls, tried, self.breaker_reset_s, wait_s=self.request_timeout_s + 1.0
                )
                if url is None:
                    break
                if tried:
                    failovers += 1
                tried.add(url)
                client = channels.get(url)
                slot = pool.lease() if pool is not None else None
                started = time.perf_counter()
                try:
                    if pool is None or slot is None:
                        result = client.infer(
                            model_name,
                            [infer_input],
                            model_version=model_version,
                            outputs=requested,
                            client_timeout=self.request_timeout_s,
                        )
                        version = str(result.get_response().model_version)
                        received = {name: result.as_numpy(name) for name in output_names}
                    else:
                        version, received = self._infer_via_shm(
                            client, url, slot, pool, model_name, model_version, chunk, output_names
                        )
                except InferenceServerException as exc:
                    if pool is not None and slot is not None:
                        pool.retire(slot)
                    outcome = _classify(exc)
                    if outcome != "transient":
                        self._board.record_success(url)  # it answered: the replica is up
                        if outcome == "invalid":
                            raise self._rejected(what, url, chunk, exc) from exc
                        raise self._unavailable(
                            what, url, model_name, model_version, pinned_from, exc
                        ) from exc
                    self._board.record_failure(
                        url, str(exc), self.breaker_failure_threshold, self.breaker_reset_s
                    )
                    channels.retire(url, client)
                    errors.append(f"{url}: {exc}")
                    continue
                except BaseException:
                    if pool is not None and slot is not None:
                        pool.retire(slot)
                    self._board.release(url)
                    raise
                if pool is not None and slot is not None:
                    pool.give_back(slot)  # its outputs were copied out
                latency_ms = (time.perf_counter() - started) * 1000.0
                self._board.record_success(url)
                arrays: dict[str, np.ndarray] = {}
                for name in output_names:
                    array = received[name]
                    if array is None:
                        raise TritonInferenceError(f"{what} at {url}: response has no {name!r}")
                    if array.shape[0] != chunk.shape[0]:
                        raise TritonInferenceError(
                            f"{what} at {url}: output {name!r} has {array.shape[0]} rows, "
                            f"expected {chunk.shape[0]}"
                        )
                    arrays[name] = array
                return _ChunkResult(arrays, version, latency_ms, retries, failovers, url)

            if not tried:  # every replica's breaker is open: fail fast, do not sleep
                raise self._breaker_error(what)
            if retries >= self.max_retries:
                hint = (
                    f" (request_timeout_s={self.request_timeout_s:g}s)"
                    if any("deadline" in e.lower() for e in errors)
                    else ""
                )
                raise TritonInferenceError(
                    f"{what} failed after {retries} retries on {len(tried)} replica(s){hint}; "
                    f"last errors: {'; '.join(errors)}"
                )
            delay = self.retry_backoff_s * (2**retries)
            retries += 1
            _logger.warning(
                "%s: transient error on every replica tried (%s); retry %d/%d in %.2fs",
                what,
                "; ".join(errors),
                retries,
                self.max_retries,
                delay,
            )
            if stop.wait(delay * (0.5 + rng.random())):
                raise _Stopped

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
        rows, whichever replica answered them. Zero rows sends no request and returns (0, 0)
        arrays (the label count is only known to the server; use ``model_labels`` if needed).
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
        stop = threading.Event()
        results: list[_ChunkResult | None] = [None] * len(bounds)
        channels = _Channels()
        slots: _ShmPool | None = None
        try:

            def run(index: int, version: str, pinned_from: str) -> _ChunkResult:
                a, b = bounds[index]
                return self._infer_chunk(
                    channels,
                    model_name,
                    version,
                    pinned_from,
                    output_names,
                    x[a:b],
                    index,
                    (a, b),
                    rng,
                    stop,
                    slots,
                )

            # Chunk 0 always goes alone over plain gRPC: it pins the version and tells the
            # output shapes, which size the shared-memory slots.
            first = run(0, model_version, "")
            results[0] = first
            pinned = model_version or first.version
            pinned_from = "" if model_version else first.url
            if len(bounds) > 1:
                workers = min(self.max_concurrency, len(bounds) - 1)
                if self.shared_memory:
                    layout = {
                        name: ((self.max_batch_rows, *array.shape[1:]), array.dtype)
                        for name, array in first.arrays.items()
                    }
                    slots = _ShmPool(workers, self.max_batch_rows * x.shape[1] * 4, layout)
                with ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="triton-infer"
                ) as pool:
                    futures: dict[Future[_ChunkResult], int] = {
                        pool.submit(run, i, pinned, pinned_from): i for i in range(1, len(bounds))
                    }
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    failed = [f for f in done if f.exception() is not None]
                    if failed:
                        stop.set()  # running chunks stop at their next attempt or backoff
                        for future in futures:
                            future.cancel()
                        # Report the earliest failing chunk; queued chunks were cancelled.
                        error = min(failed, key=futures.__getitem__).exception()
                        assert error is not None
                        raise error
                    for future, i in futures.items():
                        results[i] = future.result()
        finally:
            stop.set()
            if slots is not None:
                slots.close(channels)
            channels.close()

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
            failovers=sum(r.failovers for r in chunks),
            requests_by_replica=dict(Counter(r.url for r in chunks)),
        )
