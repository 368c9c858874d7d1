"""Replica handling of ``TritonResource`` against real servers: spread, pinning, management.

A "dead" replica is a loopback port nobody listens on, which is exactly what a client sees
when a Triton pod is gone (connection refused). Tests that need two live replicas start their
own pair over one repository (``triton_server_factory``); the rest use the session server.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.triton import TritonInferenceError, TritonResource
from tests.triton_fixtures import (
    PublishFn,
    ServerFactory,
    assert_matches_model,
    dead_url,
    random_features,
)


def test_replica_list_defaults_to_url_and_is_deduplicated() -> None:
    assert TritonResource(url="h:1").replica_urls() == ["h:1"]
    assert TritonResource(url="h:1", urls=["a:1", "b:1", "a:1"]).replica_urls() == ["a:1", "b:1"]
    with pytest.raises(ValueError, match="urls"):
        TritonResource(urls=[]).infer("m", np.zeros((1, 2), np.float32), ["o"])
    with pytest.raises(ValueError, match="breaker_failure_threshold"):
        TritonResource(breaker_failure_threshold=0).infer("m", np.zeros((1, 2)), ["o"])


def test_pinned_version_is_enforced_across_replicas(
    tmp_path: Path, publish_random_model: PublishFn, triton_server_factory: ServerFactory
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    v1 = publish_random_model(seed=0, repository=repository, model_name="pinned")
    server_a = triton_server_factory(repository)
    server_b = triton_server_factory(repository)
    a, b = server_a.grpc_url, server_b.grpc_url
    v2 = publish_random_model(seed=1, repository=repository, model_name="pinned")
    TritonResource(url=a).load_model("pinned")  # only a picks v2 up: b lags behind
    x = random_features(3000, v1.model.n_features)  # 3 chunks: a, b, a

    both = TritonResource(urls=[a, b], retry_backoff_s=1.0)
    started = time.monotonic()
    with pytest.raises(TritonInferenceError) as excinfo:
        both.infer("pinned", x, v2.output_names)
    assert time.monotonic() - started < 1.0  # not retried
    message = str(excinfo.value)
    assert f"replica {b} does not serve model 'pinned' version 2" in message
    assert f"answered by it on {a}" in message and "load_model" in message

    rollback = both.infer("pinned", x, v1.output_names, model_version="1")
    assert rollback.model_version == "1"
    assert set(rollback.requests_by_replica) == {a, b}  # both serve v1: spread over both
    assert sum(rollback.requests_by_replica.values()) == 3
    assert_matches_model(rollback.outputs, v1.model, x)

    assert both.load_model("pinned") == [a, b]
    latest = both.infer("pinned", x, v2.output_names)
    assert latest.model_version == "2" and set(latest.requests_by_replica) == {a, b}
    assert_matches_model(latest.outputs, v2.model, x)


def test_wait_until_ready_needs_one_replica_and_reports_the_others(
    triton_server: LocalTritonServer,
) -> None:
    dead = dead_url()
    status = TritonResource(urls=[dead, triton_server.grpc_url]).wait_until_ready(timeout_s=5)
    assert status[triton_server.grpc_url] == "ready"
    assert "Connection refused" in status[dead] or "failed to connect" in status[dead]

    other = dead_url()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not live and ready") as excinfo:
        TritonResource(urls=[dead, other]).wait_until_ready(timeout_s=0.5)
    assert time.monotonic() - started < 5.0
    assert dead in str(excinfo.value) and other in str(excinfo.value)


def test_load_model_loads_every_reachable_replica_and_fails_if_none(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=2)
    live, dead = triton_server.grpc_url, dead_url()
    resource = TritonResource(urls=[dead, live], retry_backoff_s=0.01)
    assert resource.load_model(published.name) == [live]
    assert resource.get_model_config(published.name)["name"] == published.name  # failover
    result = resource.infer(published.name, random_features(2500, 16), published.output_names)
    assert result.requests_by_replica == {live: 3}
    assert_matches_model(result.outputs, published.model, random_features(2500, 16))

    unreachable = TritonResource(urls=[dead, dead_url()], max_retries=1, retry_backoff_s=0.01)
    with pytest.raises(TritonInferenceError, match="no Triton replica reachable") as excinfo:
        unreachable.load_model(published.name)
    assert published.name in str(excinfo.value)

    with pytest.raises(TritonInferenceError, match="load failed on 1 of 2") as excinfo:
        resource.load_model("no_such_model")
    assert live in str(excinfo.value)


def test_replicas_in_a_dagster_asset(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=3)
    live, dead = triton_server.grpc_url, dead_url()
    x = random_features(4096, published.model.n_features)

    @dg.asset
    def scored(triton: TritonResource) -> dg.MaterializeResult:
        triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
        triton.load_model(published.name)
        result = triton.infer(published.name, x, published.output_names)
        assert_matches_model(result.outputs, published.model, x)
        open_replicas = [h.url for h in triton.replica_health() if h.state == "open"]
        return dg.MaterializeResult(
            metadata={
                "requests_by_replica": result.requests_by_replica,
                "open_replicas": open_replicas,
            }
        )

    resource = TritonResource(
        urls=[dead, live], retry_backoff_s=0.01, breaker_failure_threshold=1, ready_timeout_s=5
    )
    outcome = dg.materialize([scored], resources={"triton": resource})
    assert outcome.success
    metadata = outcome.asset_materializations_for_node("scored")[0].metadata
    assert metadata["requests_by_replica"].value == {live: 4}
    assert metadata["open_replicas"].value == [dead]
