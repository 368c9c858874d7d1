"""Fault drills against real Triton servers: crashes, slowness, unloads, bad input, replicas.

Nothing is faked. Tests that kill or restart a server use their own ``LocalTritonServer``
(``triton_server_factory``), never the session one. A slow model is the real Python backend
with the ``delay_ms`` config parameter, which sleeps in every ``execute``: it makes a call
last long enough to be interrupted, and a deadline shorter than the model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.triton import (
    InferenceResult,
    TritonInferenceError,
    TritonResource,
)
from tests.triton_fixtures import (
    PublishFn,
    ServerFactory,
    assert_matches_model,
    dead_url,
    random_features,
    start_or_fail,
)


class _Background:
    """Run ``resource.infer`` in a thread; keep its result or exception and its duration."""

    def __init__(self, resource: TritonResource, *args: object) -> None:
        self.result: InferenceResult | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(resource, *args), daemon=True)
        self._thread.start()

    def _run(self, resource: TritonResource, *args: object) -> None:
        started = time.monotonic()
        try:
            self.result = resource.infer(*args)  # type: ignore[arg-type]
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"infer still running after {timeout_s}s"


# -- a crash in the middle of a batch ---------------------------------------------------------


_NO_BREAKER = {"max_retries": 10, "retry_backoff_s": 0.1, "breaker_failure_threshold": 1000}


@pytest.mark.parametrize(
    ("settings", "shared_memory"),
    [
        pytest.param(_NO_BREAKER, False, id="retries-bridge-restart"),
        # What runs get: the breaker opens during the restart, and the call waits for its
        # trial request instead of failing (the resource is the only retry layer).
        pytest.param({}, False, id="defaults"),
        # The restarted server has forgotten every shared-memory registration.
        pytest.param(_NO_BREAKER, True, id="shared-memory-retries-bridge-restart"),
    ],
)
def test_killed_mid_batch_and_restarted(
    tmp_path: Path,
    publish_random_model: PublishFn,
    triton_server_factory: ServerFactory,
    settings: dict[str, float],
    shared_memory: bool,
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    # 30 ms per execute and 256-row chunks: the call lasts ~1 s, long enough to kill it.
    published = publish_random_model(
        seed=11, repository=repository, model_name="crash", extra_parameters={"delay_ms": "30"}
    )
    server = triton_server_factory(repository)
    url = server.grpc_url
    resource = TritonResource(url=url, max_batch_rows=256, shared_memory=shared_memory, **settings)
    x = random_features(20_000, published.model.n_features)

    call = _Background(resource, "crash", x, published.output_names)
    time.sleep(0.4)
    assert call.result is None and call.error is None, "the call ended before the crash"
    server.kill()
    # The Python backend's shared memory dies with the server instead of piling up in RAM.
    assert not list(Path("/dev/shm").glob(f"{server._shm_prefix}*"))
    start_or_fail(server)  # same ports, like a pod restarting behind its Service
    assert server.grpc_url == url
    call.join(timeout_s=60)

    # Retries outlast the restart: the call completes, every row once.
    assert call.error is None, call.error
    assert call.result is not None and call.result.retries > 0
    assert_matches_model(call.result.outputs, published.model, x)

    # Readiness closes the breaker of a replica that is back; the next call just works.
    assert resource.wait_until_ready(timeout_s=10) == {url: "ready"}
    again = resource.infer("crash", x, published.output_names)
    assert_matches_model(again.outputs, published.model, x)
    assert again.model_version == "1" and again.requests == 79


# -- a server slower than the deadline ---------------------------------------------------------


def test_slow_server_times_out_after_retries_then_succeeds_with_a_longer_deadline(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=3, extra_parameters={"delay_ms": "400"})
    url = triton_server.grpc_url
    TritonResource(url=url).load_model(published.name)
    x = random_features(100, published.model.n_features)

    impatient = TritonResource(url=url, request_timeout_s=0.1, max_retries=2, retry_backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(TritonInferenceError) as excinfo:
        impatient.infer(published.name, x, published.output_names)
    elapsed = time.monotonic() - started
    message = str(excinfo.value)
    assert "after 2 retries" in message
    assert "Deadline Exceeded" in message and "request_timeout_s=0.1s" in message
    assert published.name in message
    assert elapsed < 2.0  # 3 deadlines of 0.1 s + 2 short backoffs, not 3 x 0.4 s
    [health] = impatient.replica_health()
    assert health.requests == 3 and health.transient_failures == 3
    assert health.state == "closed"  # 3 < breaker_failure_threshold (5)

    patient = TritonResource(url=url, request_timeout_s=5.0)
    result = patient.infer(published.name, x, published.output_names)
    assert_matches_model(result.outputs, published.model, x)
    assert result.retries == 0


# -- a model unloaded while a call runs --------------------------------------------------------


def test_model_unloaded_mid_run_is_a_clear_error_and_load_model_recovers(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=4, extra_parameters={"delay_ms": "30"})
    resource = TritonResource(url=triton_server.grpc_url, max_batch_rows=256, retry_backoff_s=0.5)
    resource.load_model(published.name)
    x = random_features(30_000, published.model.n_features)

    call = _Background(resource, published.name, x, published.output_names)
    time.sleep(0.3)
    with grpcclient.InferenceServerClient(resource.url) as admin:
        admin.unload_model(published.name)
    call.join(timeout_s=30)

    assert call.result is None, "the call finished before the unload"
    assert isinstance(call.error, TritonInferenceError)
    message = str(call.error)
    assert f"model {published.name!r}" in message
    assert "not retried" in message and "load_model" in message
    assert "unknown model" in message.lower()
    # Not retried: one backoff (0.5 s+) per chunk would show; nothing counts as a failure.
    assert call.seconds < 5.0
    assert resource.replica_health()[0].transient_failures == 0

    resource.load_model(published.name)
    result = resource.infer(published.name, x, published.output_names)
    assert_matches_model(result.outputs, published.model, x)


# -- input the model cannot take -------------------------------------------------------------


def test_wrong_input_shape_is_one_request_and_a_clear_error(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=5, n_features=16)
    resource = TritonResource(url=triton_server.grpc_url, max_retries=4, retry_backoff_s=1.0)
    resource.load_model(published.name)
    started = time.monotonic()
    with pytest.raises(TritonInferenceError) as excinfo:
        resource.infer(published.name, random_features(3000, 7), published.output_names)
    assert time.monotonic() - started < 1.0
    message = str(excinfo.value)
    assert f"model {published.name!r}" in message
    assert "input 'features' expects shape [-1, 16]" in message
    assert "given (1024, 7)" in message
    assert "not retried" in message
    [health] = resource.replica_health()
    assert health.requests == 1  # chunk 0 alone, never retried, the other chunks never sent
    assert health.transient_failures == 0 and health.state == "closed"


# -- replicas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_memory", [False, True], ids=["grpc", "shared-memory"])
def test_one_replica_down_fails_over_opens_its_breaker_then_half_open_recovers(
    tmp_path: Path,
    publish_random_model: PublishFn,
    triton_server_factory: ServerFactory,
    shared_memory: bool,
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    published = publish_random_model(seed=6, repository=repository, model_name="pair")
    server_a = triton_server_factory(repository)
    server_b = triton_server_factory(repository)
    a, b = server_a.grpc_url, server_b.grpc_url
    resource = TritonResource(
        urls=[a, b],
        max_batch_rows=256,
        retry_backoff_s=0.05,
        breaker_reset_s=1.0,
        shared_memory=shared_memory,
    )
    x = random_features(10_000, published.model.n_features)  # 40 chunks

    healthy = resource.infer("pair", x, published.output_names)
    assert_matches_model(healthy.outputs, published.model, x)
    assert healthy.requests_by_replica == {a: 20, b: 20}  # round-robin spread

    server_a.kill()
    degraded = resource.infer("pair", x, published.output_names)
    assert_matches_model(degraded.outputs, published.model, x)
    assert degraded.requests_by_replica == {b: 40}
    # Each request a got failed over to b at once (no backoff) until a's breaker opened at 5
    # (a few more if chunks in flight had already picked a).
    assert degraded.retries == 0
    assert 5 <= degraded.failovers <= 5 + resource.max_concurrency
    health = {h.url: h for h in resource.replica_health()}
    assert health[a].state == "open" and health[a].consecutive_failures == degraded.failovers
    assert health[b].state == "closed" and health[b].consecutive_failures == 0
    assert resource.wait_until_ready(timeout_s=5)[b] == "ready"

    # While open, a is skipped without a single request.
    sent_to_a = health[a].requests
    resource.infer("pair", x[:2000], published.output_names)
    assert {h.url: h for h in resource.replica_health()}[a].requests == sent_to_a

    # Back on the same ports; after breaker_reset_s one trial request closes the breaker.
    start_or_fail(server_a)
    assert server_a.grpc_url == a
    time.sleep(resource.breaker_reset_s)
    recovered = resource.infer("pair", x, published.output_names)
    assert_matches_model(recovered.outputs, published.model, x)
    assert recovered.requests_by_replica.get(a, 0) > 0
    assert {h.url: h.state for h in resource.replica_health()} == {a: "closed", b: "closed"}


def test_all_replicas_down_fails_fast_with_the_breaker_message() -> None:
    a, b = dead_url(), dead_url()
    resource = TritonResource(
        urls=[a, b],
        max_retries=1,
        retry_backoff_s=0.01,
        breaker_failure_threshold=2,
        breaker_reset_s=0.5,
    )
    x = random_features(3000, 16)
    with pytest.raises(TritonInferenceError, match="after 1 retries on 2 replica"):
        resource.infer("router", x, ["queue_probs"])  # 2 rounds x 2 replicas: both open
    assert [h.state for h in resource.replica_health()] == ["open", "open"]

    started = time.monotonic()
    with pytest.raises(TritonInferenceError) as excinfo:
        resource.infer("router", x, ["queue_probs"])
    assert time.monotonic() - started < 1.0
    message = str(excinfo.value)
    assert "circuit breaker open for all 2 Triton replica(s)" in message
    assert a in message and b in message
    assert "2 consecutive transient failures" in message and "trial request in" in message
    assert "'router'" in message
    assert [h.requests for h in resource.replica_health()] == [2, 2]  # nothing was sent

    # Half-open: after breaker_reset_s each replica gets exactly one trial request.
    time.sleep(0.55)
    with pytest.raises(TritonInferenceError, match="circuit breaker open"):
        resource.infer("router", x, ["queue_probs"])
    health = resource.replica_health()
    assert [h.requests for h in health] == [3, 3]
    assert [h.state for h in health] == ["open", "open"]
    assert all(h.consecutive_failures == 3 for h in health)


def test_breaker_state_spans_calls_of_one_instance_only() -> None:
    dead = dead_url()
    settings = {"url": dead, "max_retries": 0, "breaker_failure_threshold": 1}
    resource = TritonResource(**settings)
    with pytest.raises(TritonInferenceError, match="after 0 retries"):
        resource.infer("router", random_features(10, 16), ["queue_probs"])
    with pytest.raises(TritonInferenceError, match="circuit breaker open"):
        resource.infer("router", random_features(10, 16), ["queue_probs"])
    # A new instance (a new run) starts with closed breakers: no hidden global state.
    fresh = TritonResource(**settings)
    assert fresh.replica_health()[0].state == "closed"
    with pytest.raises(TritonInferenceError, match="after 0 retries"):
        fresh.infer("router", random_features(10, 16), ["queue_probs"])


def test_concurrent_calls_share_one_breaker_and_half_open_lets_one_trial_through() -> None:
    dead = dead_url()
    resource = TritonResource(
        url=dead, max_retries=0, breaker_failure_threshold=3, breaker_reset_s=1.0
    )
    errors: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            resource.infer("router", random_features(10, 16), ["queue_probs"])
        except TritonInferenceError as exc:
            with lock:
                errors.append(str(exc))

    def wave() -> None:
        errors.clear()
        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(errors) == 16

    wave()
    [health] = resource.replica_health()
    assert health.state == "open"
    # Every request that went out was counted, and the breaker stopped the rest.
    assert health.transient_failures == health.requests >= 3
    assert sum("circuit breaker open" in e for e in errors) == 16 - health.requests

    # After the reset, 16 concurrent calls send exactly one trial; it fails and reopens.
    sent = health.requests
    time.sleep(resource.breaker_reset_s + 0.05)
    wave()
    [health] = resource.replica_health()
    assert health.requests == sent + 1
    assert health.state == "open"
    assert sum("circuit breaker open" in e for e in errors) == 15
