"""The one retry layer of the Triton boundary, against real servers.

What a user notices: a server restarting under a run delays the run instead of failing it
(config reads included), an error that cannot succeed fails at once and says it is permanent,
and transient failures stop after a bounded time with a message that says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from aios_dagster.lib.inference.batch import score
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.triton import (
    TritonPermanentError,
    TritonResource,
    TritonTransientError,
    is_permanent,
)
from tests.triton_fixtures import (
    PublishFn,
    ServerFactory,
    assert_matches_model,
    dead_url,
    numeric_spec,
    random_features,
    start_or_fail,
)


class _Background:
    """Run ``fn(*args)`` in a thread; keep its result or exception."""

    def __init__(self, fn: Callable[..., Any], *args: object) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], *args: object) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def join(self, timeout_s: float) -> None:
        assert self.done.wait(timeout_s), f"still running after {timeout_s}s"


def test_a_restart_during_config_read_and_scoring_is_ridden_through(
    tmp_path: Path, publish_random_model: PublishFn, triton_server_factory: ServerFactory
) -> None:
    """Both calls ``score`` makes (config read, then inference) outlast a restart."""
    repository = tmp_path / "repository"
    repository.mkdir()
    published = publish_random_model(seed=12, repository=repository, model_name="cfg")
    server = triton_server_factory(repository)
    url = server.grpc_url
    resource = TritonResource(url=url)  # default retry budget: the only retry there is
    x = random_features(300, published.model.n_features)
    columns = {f"x{i}": x[:, i] for i in range(x.shape[1])}
    table = pa.table({"id": [f"r{i}" for i in range(300)], **columns})

    server.kill()
    config_read = _Background(resource.get_model_config, "cfg")
    scoring = _Background(score, numeric_spec("cfg", x.shape[1]), table, resource, "run-1")
    time.sleep(1.5)
    assert config_read.error is None and scoring.error is None, "failed while server down"
    assert not config_read.done.is_set() and not scoring.done.is_set()
    start_or_fail(server)  # same ports, like a pod restarting behind its Service
    assert server.grpc_url == url

    config_read.join(timeout_s=60)
    assert config_read.error is None, config_read.error
    assert config_read.result["name"] == "cfg"
    scoring.join(timeout_s=60)
    assert scoring.error is None, scoring.error
    decisions, result = scoring.result
    assert decisions.num_rows == 300 and result.model_version == "1"
    assert_matches_model(result.outputs, published.model, x)


def test_errors_that_cannot_succeed_fail_at_once_as_permanent(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=13, n_features=16)
    resource = TritonResource(url=triton_server.grpc_url, retry_backoff_s=1.0)
    resource.load_model(published.name)

    started = time.monotonic()
    with pytest.raises(TritonPermanentError) as excinfo:
        resource.get_model_config("no_such_model")
    assert time.monotonic() - started < 1.0  # one retry would have waited >= 1 s
    message = str(excinfo.value)
    assert "'no_such_model'" in message and "not retried" in message and "load_model" in message
    assert is_permanent(excinfo.value)

    with pytest.raises(TritonPermanentError) as excinfo:
        resource.infer(published.name, random_features(10, 7), published.output_names)
    assert is_permanent(excinfo.value) and "not retried" in str(excinfo.value)
    [health] = resource.replica_health()
    assert health.transient_failures == 0 and health.state == "closed"


def test_transient_failures_stop_at_the_time_budget_and_are_not_permanent() -> None:
    resource = TritonResource(
        url=dead_url(),
        max_retries=1000,
        retry_backoff_s=0.05,
        retry_max_backoff_s=0.2,
        retry_total_s=1.0,
        breaker_failure_threshold=10_000,
    )
    started = time.monotonic()
    with pytest.raises(TritonTransientError) as excinfo:
        resource.infer("router", random_features(10, 16), ["queue_probs"])
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 3.0
    message = str(excinfo.value)
    assert "retry budget of 1s spent" in message and "'router'" in message
    assert not is_permanent(excinfo.value)

    with pytest.raises(TritonTransientError, match="retry budget of 1s spent") as excinfo:
        resource.get_model_config("router")
    assert not is_permanent(excinfo.value)


def test_load_model_waits_for_a_restarting_server(
    tmp_path: Path, publish_random_model: PublishFn, triton_server_factory: ServerFactory
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    published = publish_random_model(seed=14, repository=repository, model_name="reload")
    server = triton_server_factory(repository)
    resource = TritonResource(url=server.grpc_url)
    server.kill()
    load = _Background(resource.load_model, "reload")
    time.sleep(1.0)
    assert not load.done.is_set()
    start_or_fail(server)
    load.join(timeout_s=60)
    assert load.error is None, load.error
    assert load.result == [server.grpc_url]
    result = resource.infer("reload", random_features(50, 16), published.output_names)
    assert_matches_model(result.outputs, published.model, random_features(50, 16))
