"""The serving layer against a real Triton server (CPU, Python backend): nothing is faked."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from aios_dagster.lib.serving.launcher import LocalTritonServer, TritonStartError
from aios_dagster.lib.serving.linear_model import LinearHead, LinearHeadsModel
from aios_dagster.lib.serving.model_repository import (
    list_versions,
    publish_linear_model,
    read_model_card,
)
from aios_dagster.lib.serving.triton import TritonInferenceError, TritonResource
from tests.triton_fixtures import (
    PublishFn,
    assert_matches_model,
    dead_url,
    random_features,
    start_or_fail,
)


def _port_open(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


# -- model format (in-process) ----------------------------------------------------------------


def test_npz_round_trip_and_content_hash(tmp_path: Path) -> None:
    model = LinearHeadsModel.random(12, {"queue": 5, "priority": 3}, seed=3)
    path = tmp_path / "weights.npz"
    model.to_npz(path)
    loaded = LinearHeadsModel.from_npz(path)
    assert loaded.feature_names == model.feature_names
    assert [h.labels for h in loaded.heads] == [h.labels for h in model.heads]
    assert loaded.content_hash() == model.content_hash()
    x = random_features(50, 12)
    for name, probs in loaded.predict_proba(x).items():
        np.testing.assert_array_equal(probs, model.predict_proba(x)[name])
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    other = LinearHeadsModel.random(12, {"queue": 5, "priority": 3}, seed=4)
    assert other.content_hash() != model.content_hash()


def test_labels_with_commas_are_rejected() -> None:
    with pytest.raises(ValueError, match="commas"):
        LinearHead("queue", ("a,b", "c"), np.zeros((2, 3)), np.zeros(2))


# -- the server process -----------------------------------------------------------------------


def test_server_is_ready_on_loopback_ports(triton_server: LocalTritonServer) -> None:
    assert triton_server.is_running()
    assert triton_server.pid is not None
    urls = [triton_server.http_url, triton_server.grpc_url, triton_server.metrics_url]
    assert all(url.startswith("127.0.0.1:") for url in urls)
    assert len({url.rsplit(":", 1)[1] for url in urls}) == 3
    with urllib.request.urlopen(f"http://{triton_server.http_url}/v2/health/ready") as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://{triton_server.metrics_url}/metrics") as resp:
        assert b"nv_" in resp.read()
    TritonResource(url=triton_server.grpc_url).wait_until_ready(timeout_s=5)


def test_stop_reaps_the_process_and_is_idempotent(tmp_path: Path) -> None:
    repository = tmp_path / "empty_repository"
    repository.mkdir()
    server = start_or_fail(LocalTritonServer(repository, tmp_path / "work"))
    pid, grpc_url = server.pid, server.grpc_url
    assert pid is not None and _port_open(grpc_url)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 20
    assert not server.is_running() and server.pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left behind
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no stub left in the server's process group either
    assert not _port_open(grpc_url)
    server.stop()  # idempotent


def test_start_that_times_out_raises_with_the_log_tail_and_reaps(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    server = LocalTritonServer(repository, tmp_path / "work", startup_timeout_s=0.01)
    with pytest.raises(TritonStartError, match="was not ready after") as excinfo:
        server.start()
    assert "last log lines" in str(excinfo.value)
    assert str(server.log_path) in str(excinfo.value)
    assert not server.is_running() and server.pid is None


def test_missing_repository_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(TritonStartError, match="does not exist"):
        LocalTritonServer(tmp_path / "nope", tmp_path / "work").start()


# -- publish, load, infer ---------------------------------------------------------------------


def test_publish_load_infer_matches_in_process(
    triton_resource: TritonResource, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=0)
    assert published.published.version == 1 and published.published.created
    triton_resource.load_model(published.name)
    x = random_features(5000, published.model.n_features)  # > max_batch_rows: chunks and order
    result = triton_resource.infer(published.name, x, published.output_names)
    assert_matches_model(result.outputs, published.model, x)
    assert result.model_name == published.name
    assert result.model_version == "1"
    assert result.requests == 5  # ceil(5000 / 1024)
    assert result.retries == 0
    assert len(result.latencies_ms) == 5 and all(ms > 0 for ms in result.latencies_ms)


def test_republishing_identical_weights_is_a_no_op(
    triton_repository: Path, publish_random_model: PublishFn
) -> None:
    first = publish_random_model(seed=0)
    weights = first.published.path / "weights.npz"
    mtime = weights.stat().st_mtime_ns
    again = publish_random_model(seed=0)
    assert again.published.created is False
    assert again.published.version == first.published.version == 1
    assert again.published.content_hash == first.published.content_hash
    assert list_versions(triton_repository, first.name) == [1]
    assert weights.stat().st_mtime_ns == mtime
    card = read_model_card(triton_repository, first.name, 1)
    assert card["content_hash"] == first.model.content_hash()
    assert not [p for p in (triton_repository / first.name).iterdir() if p.name.startswith(".")]


def test_new_version_is_served_and_old_version_still_answers(
    triton_resource: TritonResource, publish_random_model: PublishFn
) -> None:
    v1 = publish_random_model(seed=0)
    triton_resource.load_model(v1.name)
    v2 = publish_random_model(seed=1)
    assert v2.published.version == 2 and v2.published.created
    x = random_features(300, v1.model.n_features)

    # Explicit model control: publishing alone changes nothing that is served.
    assert triton_resource.infer(v1.name, x, v1.output_names).model_version == "1"

    triton_resource.load_model(v1.name)
    latest = triton_resource.infer(v1.name, x, v2.output_names)
    assert latest.model_version == "2"
    assert_matches_model(latest.outputs, v2.model, x)

    rollback = triton_resource.infer(v1.name, x, v1.output_names, model_version="1")
    assert rollback.model_version == "1"
    assert_matches_model(rollback.outputs, v1.model, x)
    pinned = triton_resource.infer(v1.name, x, v2.output_names, model_version="2")
    assert_matches_model(pinned.outputs, v2.model, x)


def test_feature_count_change_restricts_versions_to_the_new_signature(
    triton_repository: Path, triton_resource: TritonResource, publish_random_model: PublishFn
) -> None:
    v1 = publish_random_model(seed=0, n_features=16)
    triton_resource.load_model(v1.name)
    v2 = publish_random_model(seed=1, n_features=20)
    config_text = (triton_repository / v1.name / "config.pbtxt").read_text()
    assert "specific { versions: [2] }" in config_text
    triton_resource.load_model(v1.name)
    x = random_features(10, 20)
    result = triton_resource.infer(v1.name, x, v2.output_names)
    assert result.model_version == "2"
    assert_matches_model(result.outputs, v2.model, x)


def test_labels_and_feature_names_come_from_the_model_config(
    triton_resource: TritonResource, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=2, heads={"queue": 4, "priority": 2, "sentiment": 3})
    triton_resource.load_model(published.name)
    labels = triton_resource.model_labels(published.name)
    assert labels == {head.name: head.labels for head in published.model.heads}
    assert list(labels) == ["queue", "priority", "sentiment"]
    config = triton_resource.get_model_config(published.name)
    assert config["parameters"]["feature_names"]["string_value"].split(",") == list(
        published.model.feature_names
    )
    assert config["max_batch_size"] == 1024
    assert "all" in config["version_policy"]


def test_zero_rows_send_no_request() -> None:
    # A dead URL proves no network is touched.
    result = TritonResource(url=dead_url()).infer(
        "anything", np.zeros((0, 16), dtype=np.float32), ["queue_probs"]
    )
    assert result.requests == 0
    assert result.outputs["queue_probs"].shape[0] == 0


# -- failures ---------------------------------------------------------------------------------


def test_wrong_feature_count_fails_at_once_without_retry(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=0, n_features=16)
    resource = TritonResource(url=triton_server.grpc_url, max_retries=4, retry_backoff_s=1.0)
    resource.load_model(published.name)
    started = time.monotonic()
    with pytest.raises(TritonInferenceError) as excinfo:
        resource.infer(published.name, random_features(10, 7), published.output_names)
    assert time.monotonic() - started < 1.0  # one retry would have slept >= 0.5 s
    message = str(excinfo.value)
    assert published.name in message
    assert "not retried" in message
    assert "(10, 7)" in message and "Expected [-1,16]" in message


def test_unreachable_server_fails_after_retries_not_a_hang() -> None:
    resource = TritonResource(url=dead_url(), max_retries=3, retry_backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(TritonInferenceError, match="after 3 retries") as excinfo:
        resource.infer("router", random_features(2500, 16), ["queue_probs"])
    assert time.monotonic() - started < 10
    assert "router" in str(excinfo.value) and "chunk 0" in str(excinfo.value)


def test_restarted_server_serves_the_same_repository_again(
    tmp_path: Path, publish_random_model: PublishFn
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    published = publish_random_model(seed=5, model_name="restart_me", repository=repository)
    x = random_features(2100, published.model.n_features)
    server = LocalTritonServer(repository, tmp_path / "work")
    try:
        start_or_fail(server)  # --load-model=* serves what the repository holds at start
        resource = TritonResource(url=server.grpc_url, max_retries=2, retry_backoff_s=0.01)
        assert_matches_model(
            resource.infer("restart_me", x, published.output_names).outputs, published.model, x
        )

        server.stop()
        started = time.monotonic()
        with pytest.raises(TritonInferenceError, match="after 2 retries"):
            resource.infer("restart_me", x, published.output_names)
        assert time.monotonic() - started < 10

        start_or_fail(server)  # new ports
        resource = TritonResource(url=server.grpc_url)
        resource.wait_until_ready(timeout_s=10)
        result = resource.infer("restart_me", x, published.output_names)
        assert result.model_version == "1"
        assert_matches_model(result.outputs, published.model, x)
    finally:
        server.stop()


def test_resource_in_a_dagster_asset(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=7)
    x = random_features(1500, published.model.n_features)

    @dg.asset
    def scored(triton: TritonResource) -> dg.MaterializeResult:
        triton.load_model(published.name)
        result = triton.infer(published.name, x, published.output_names)
        assert_matches_model(result.outputs, published.model, x)
        return dg.MaterializeResult(
            metadata={"model_version": result.model_version, "requests": result.requests}
        )

    outcome = dg.materialize(
        [scored], resources={"triton": TritonResource(url=triton_server.grpc_url)}
    )
    assert outcome.success
    metadata = outcome.asset_materializations_for_node("scored")[0].metadata
    assert metadata["model_version"].value == "1"
    assert metadata["requests"].value == 2


def test_publish_is_atomic_and_numbers_versions(tmp_path: Path) -> None:
    model_a = LinearHeadsModel.random(4, {"queue": 2}, seed=0)
    model_b = LinearHeadsModel.random(4, {"queue": 2}, seed=1)
    first = publish_linear_model(tmp_path, "m", model_a)
    second = publish_linear_model(tmp_path, "m", model_b)
    third = publish_linear_model(tmp_path, "m", model_a)  # an old model again is a new version
    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert list_versions(tmp_path, "m") == [1, 2, 3]
    for version in (1, 2, 3):
        files = sorted(p.name for p in (tmp_path / "m" / str(version)).iterdir())
        assert files == ["model.py", "model_card.json", "weights.npz"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "1",
        "2",
        "3",
        "config.pbtxt",
    ]


def test_input_name_is_part_of_the_published_signature(tmp_path: Path) -> None:
    model = LinearHeadsModel.random(4, {"queue": 2}, seed=0)
    first = publish_linear_model(tmp_path, "m", model)
    assert publish_linear_model(tmp_path, "m", model).created is False
    renamed = publish_linear_model(tmp_path, "m", model, input_name="x_in")
    # Same weights under another input name: a new version, and the older one (served as
    # "features") is no longer listed under a config that names "x_in".
    assert renamed.created and renamed.version == first.version + 1
    config = (tmp_path / "m" / "config.pbtxt").read_text()
    assert 'name: "x_in"' in config and '"features"' not in config
    assert "specific { versions: [2] }" in config
    assert read_model_card(tmp_path, "m", 2)["input_name"] == "x_in"
    assert publish_linear_model(tmp_path, "m", model, input_name="x_in").created is False
    with pytest.raises(ValueError, match="input tensor name 'x in'"):
        publish_linear_model(tmp_path, "m", model, input_name="x in")
