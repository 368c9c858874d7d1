"""Chunked, concurrent inference over Triton replicas: the body of ``TritonResource.infer``.

Throughput for batch scoring comes from client-side batching (``max_batch_rows`` rows per
request) and a few requests in flight (``max_concurrency``), because per-request overhead caps a
server at a few thousand requests per second. What one call guarantees:

* rows come back in input order, each row exactly once;
* one result is one model version: unless a version is pinned, chunk 0 is sent alone and the
  version that answered it is pinned for every other chunk on every replica, so a version
  loaded mid-call (or a replica that lags behind) can never mix two models in one result;
* chunks are spread round-robin over replicas whose circuit breaker is closed; a transient
  failure is sent at once to another replica (failover), and only a round in which every
  replica failed is retried (``retrying``); permanent errors fail at once;
* every client, shared-memory region and thread of the call is released when it ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
from opentelemetry import context as otel_context
from tritonclient.utils import InferenceServerException

from aios_dagster.lib import tracing
from aios_dagster.lib.serving.breaker import ReplicaBoard
from aios_dagster.lib.serving.channels import ChannelPool
from aios_dagster.lib.serving.errors import (
    TritonInferenceError,
    TritonPermanentError,
    TritonTransientError,
    classify,
    model_not_served,
    rejected_input,
)
from aios_dagster.lib.serving.retrying import (
    CallStopped,
    RetryBudget,
    RoundFailed,
    call_with_retries,
)
from aios_dagster.lib.serving.shared_memory import ShmPool, infer_via_shm


@dataclass(frozen=True)
class InferenceResult:
    """Outputs of one ``TritonResource.infer`` call, with what it took to get them.

    ``retries`` counts retried rounds (what ``max_retries`` bounds) summed over chunks;
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
class CallSettings:
    """The resource's settings that shape one call (read once, so a call is consistent)."""

    request_timeout_s: float
    max_batch_rows: int
    max_concurrency: int
    breaker_failure_threshold: int
    breaker_reset_s: float
    shared_memory: bool
    retry: RetryBudget


@dataclass(frozen=True)
class _ChunkResult:
    arrays: dict[str, np.ndarray]
    version: str
    latency_ms: float
    retries: int
    failovers: int
    url: str


class _Call:
    """State shared by the chunks of one ``infer`` call."""

    def __init__(
        self,
        urls: list[str],
        board: ReplicaBoard,
        settings: CallSettings,
        model_name: str,
        input_name: str,
        output_names: list[str],
    ) -> None:
        self.urls = urls
        self.board = board
        self.settings = settings
        self.model_name = model_name
        self.input_name = input_name
        self.output_names = output_names
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.channels = ChannelPool()
        self.pool: ShmPool | None = None
        # Chunks run on pool threads: their spans are children of the caller's (the step's).
        self.trace_context = otel_context.get_current()

    def breaker_error(self, what: str) -> TritonTransientError:
        """Every replica's breaker is open: say when each one gets its trial request."""
        parts = []
        for h in self.board.snapshot(self.urls, self.settings.breaker_reset_s):
            when = (
                "trial request due now or in flight"
                if not h.retry_in_s
                else f"trial request in {h.retry_in_s:.1f}s"
            )
            parts.append(
                f"{h.url} ({h.consecutive_failures} consecutive transient failures, {when}; "
                f"last error: {h.last_error or 'n/a'})"
            )
        return TritonTransientError(
            f"{what}: failing fast, circuit breaker open for all {len(parts)} Triton "
            f"replica(s): {'; '.join(parts)}. An open replica gets one trial request "
            f"{self.settings.breaker_reset_s:g}s after it opened; wait_until_ready() closes the "
            f"breaker of a replica that answers ready."
        )

    def send(
        self,
        client: grpcclient.InferenceServerClient,
        url: str,
        chunk: np.ndarray,
        version: str,
        infer_input: grpcclient.InferInput,
    ) -> tuple[str, dict[str, np.ndarray | None]]:
        """One request to ``url``: (answering version, outputs). Server errors propagate."""
        timeout_s = self.settings.request_timeout_s
        pool = self.pool
        headers = tracing.inject_headers()  # W3C traceparent: Triton's own tracing joins in
        if pool is None:
            result = client.infer(
                self.model_name,
                [infer_input],
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(n) for n in self.output_names],
                client_timeout=timeout_s,
                headers=headers,
            )
            received = {name: result.as_numpy(name) for name in self.output_names}
            return str(result.get_response().model_version), received
        slot = pool.lease()
        try:
            answer = infer_via_shm(
                client,
                url,
                slot,
                pool,
                self.model_name,
                version,
                self.input_name,
                chunk,
                self.output_names,
                timeout_s,
                headers,
            )
        except BaseException:
            pool.retire(slot)
            raise
        pool.give_back(slot)  # its outputs were copied out
        return answer

    def chunk(
        self, index: int, rows: tuple[int, int], chunk: np.ndarray, version: str, pinned_from: str
    ) -> _ChunkResult:
        """Send one chunk (one span: model, version, rows, retries, failovers, replica)."""
        with tracing.tracer().start_as_current_span(
            "triton.infer",
            context=self.trace_context,
            attributes={
                "triton.model": self.model_name,
                "triton.requested_version": version or "<latest>",
                "triton.batch_size": int(chunk.shape[0]),
                "triton.chunk": index,
                "triton.shared_memory": self.pool is not None,
            },
        ) as span:
            result = self._chunk(index, rows, chunk, version, pinned_from)
            span.set_attributes(
                {
                    "triton.model_version": result.version,
                    "triton.retries": result.retries,
                    "triton.failovers": result.failovers,
                    "triton.replica": result.url,
                    "triton.latency_ms": result.latency_ms,
                }
            )
            return result

    def _chunk(
        self, index: int, rows: tuple[int, int], chunk: np.ndarray, version: str, pinned_from: str
    ) -> _ChunkResult:
        """Send one chunk: failover across replicas within a round, rounds retried."""
        what = (
            f"model {self.model_name!r} version {version or '<latest>'}, "
            f"chunk {index} (rows {rows[0]}:{rows[1]})"
        )
        s = self.settings
        infer_input = grpcclient.InferInput(self.input_name, list(chunk.shape), "FP32")
        if self.pool is None:  # serialised once per chunk, reused by every attempt
            infer_input.set_data_from_numpy(chunk)
        failovers = 0

        def one_round() -> _ChunkResult:
            nonlocal failovers
            tried: set[str] = set()
            errors: list[str] = []
            while not self.stop.is_set():
                url = self.board.acquire(
                    self.urls, tried, s.breaker_reset_s, wait_s=s.request_timeout_s + 1.0
                )
                if url is None:
                    break
                if tried:
                    failovers += 1
                tried.add(url)
                client = self.channels.get(url)
                started = time.perf_counter()
                try:
                    answered, received = self.send(client, url, chunk, version, infer_input)
                except InferenceServerException as exc:
                    outcome = classify(exc)
                    if outcome != "transient":
                        self.board.record_success(url)  # it answered: the replica is up
                        if outcome == "invalid":
                            raise rejected_input(
                                what, url, self.input_name, tuple(chunk.shape), exc
                            ) from exc
                        raise model_not_served(
                            what, url, self.model_name, version, pinned_from, exc
                        ) from exc
                    self.board.record_failure(
                        url, str(exc), s.breaker_failure_threshold, s.breaker_reset_s
                    )
                    self.channels.retire(url, client)
                    errors.append(f"{url}: {exc}")
                    continue
                except BaseException:
                    self.board.release(url)
                    raise
                latency_ms = (time.perf_counter() - started) * 1000.0
                self.board.record_success(url)
                return _ChunkResult(
                    self._checked(what, url, chunk, received), answered, latency_ms, 0, 0, url
                )
            if self.stop.is_set():
                raise CallStopped
            if tried:
                raise RoundFailed(errors, len(tried))
            if self.board.open_since_before(self.urls, self.started):
                raise self.breaker_error(what)  # known down before this call: fail fast
            # Our own failures opened the breakers (a restart mid-call): wait for the trial.
            wait_s = self.board.next_trial_in(self.urls, s.breaker_reset_s)
            raise RoundFailed([], len(self.urls), wait_s=wait_s)

        def give_up(last: RoundFailed, retries: int, spent: bool) -> TritonInferenceError:
            if not last.errors:
                return self.breaker_error(what)
            hint = (
                f" (request_timeout_s={s.request_timeout_s:g}s)"
                if any("deadline" in e.lower() for e in last.errors)
                else ""
            )
            budget = f", retry budget of {s.retry.total_s:g}s spent" if spent else ""
            return TritonTransientError(
                f"{what} failed after {retries} retries on {last.replicas} replica(s)"
                f"{hint}{budget}; last errors: {'; '.join(last.errors)}"
            )

        result, retries = call_with_retries(
            one_round, s.retry, started=self.started, what=what, give_up=give_up, stop=self.stop
        )
        return _ChunkResult(
            result.arrays, result.version, result.latency_ms, retries, failovers, result.url
        )

    def _checked(
        self, what: str, url: str, chunk: np.ndarray, received: dict[str, np.ndarray | None]
    ) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for name in self.output_names:
            array = received[name]
            if array is None:
                raise TritonPermanentError(f"{what} at {url}: response has no {name!r}")
            if array.shape[0] != chunk.shape[0]:
                raise TritonPermanentError(
                    f"{what} at {url}: output {name!r} has {array.shape[0]} rows, "
                    f"expected {chunk.shape[0]}"
                )
            arrays[name] = array
        return arrays


def run_inference(
    urls: list[str],
    board: ReplicaBoard,
    settings: CallSettings,
    model_name: str,
    x: np.ndarray,
    output_names: list[str],
    model_version: str,
    input_name: str,
) -> InferenceResult:
    """Score ``x`` (a non-empty, C-contiguous float32 matrix) in chunks; see the module doc."""
    n_rows = x.shape[0]
    step = settings.max_batch_rows
    bounds = [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]
    results: list[_ChunkResult | None] = [None] * len(bounds)
    call = _Call(urls, board, settings, model_name, input_name, output_names)

    def run(index: int, version: str, pinned_from: str) -> _ChunkResult:
        a, b = bounds[index]
        return call.chunk(index, (a, b), x[a:b], version, pinned_from)

    try:
        # Chunk 0 always goes alone over plain gRPC: it pins the version and tells the output
        # shapes, which size the shared-memory slots.
        first = run(0, model_version, "")
        results[0] = first
        pinned = model_version or first.version
        pinned_from = "" if model_version else first.url
        if len(bounds) > 1:
            workers = min(settings.max_concurrency, len(bounds) - 1)
            if settings.shared_memory:
                layout = {
                    name: ((step, *array.shape[1:]), array.dtype)
                    for name, array in first.arrays.items()
                }
                call.pool = ShmPool(workers, step * x.shape[1] * 4, layout)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triton-infer") as ex:
                futures: dict[Future[_ChunkResult], int] = {
                    ex.submit(run, i, pinned, pinned_from): i for i in range(1, len(bounds))
                }
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    call.stop.set()  # running chunks stop at their next attempt or backoff
                    for future in futures:
                        future.cancel()
                    # Report the earliest failing chunk; queued chunks were cancelled.
                    error = min(failed, key=futures.__getitem__).exception()
                    assert error is not None
                    raise error
                for future, i in futures.items():
                    results[i] = future.result()
    finally:
        call.stop.set()
        if call.pool is not None:
            call.pool.close(call.channels)
        call.channels.close()

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
