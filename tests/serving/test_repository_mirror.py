"""The model repository in object storage: mirrored to a real S3 API and served from it by a
real Triton reading the bucket itself.

The bucket is moto's S3 server (a local implementation of the S3 API, from PyPI) on loopback;
Triton 2.51's own S3 client reads ``s3://http://127.0.0.1:<port>/<bucket>/<path>`` with the
standard AWS variables, exactly as a pod on Kubernetes reads MinIO or S3.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from moto.server import ThreadedMotoServer

from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.repository_mirror import MirrorError, RepositoryMirror
from aios_dagster.lib.serving.triton import TritonInferenceError, TritonResource
from tests.net import free_port
from tests.serving.test_projection import OUTPUTS, project
from tests.triton_fixtures import assert_matches_model, random_features, start_or_fail

NAME = "mirrored"
HEADS = {"queue": 6, "priority": 3}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A local S3 endpoint; the AWS variables point every client (s3fs, Triton) at it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
        }.items():
            env.setenv(key, value)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def bucket(s3: str) -> str:
    """An empty bucket of its own for each test."""
    name = f"aios-models-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(name)
    return name


def _models() -> dict[int, LinearHeadsModel]:
    return {v: LinearHeadsModel.random(16, HEADS, seed=60 + v) for v in (1, 2, 3)}


def test_triton_serves_the_projection_from_the_bucket_and_follows_its_changes(
    s3: str, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "repository"
    local.mkdir()
    models = _models()
    mirror = RepositoryMirror(f"s3://{bucket}/model_repository")

    project(local, NAME, {1: models[1], 2: models[2]}, champion=1, challenger=2, share="0.2")
    first = mirror.push(local, NAME)
    assert first.uploaded_versions == (1, 2) and first.removed_versions == ()
    assert mirror.remote_versions(NAME) == [1, 2]
    # Versions are immutable: a second push uploads only the small top-level files again.
    again = mirror.push(local, NAME)
    assert again.uploaded_versions == () and again.files == 1  # config.pbtxt

    host_port = s3.removeprefix("http://")
    url = f"s3://http://{host_port}/{bucket}/model_repository"
    server = start_or_fail(LocalTritonServer(url, tmp_path / "work"))
    try:
        triton = TritonResource(url=server.grpc_url, retry_backoff_s=0.05)
        triton.load_model(NAME)
        x = random_features(64, 16)
        for version in (1, 2):
            answer = triton.infer(NAME, x, OUTPUTS, model_version=str(version))
            assert_matches_model(answer.outputs, models[version], x)

        # Promote 2, challenge with 3: the bucket gains 3 and loses 1, and Triton follows it.
        project(local, NAME, {2: models[2], 3: models[3]}, champion=2, challenger=3, share="0.1")
        moved = mirror.push(local, NAME)
        assert (moved.uploaded_versions, moved.removed_versions) == ((3,), (1,))
        assert mirror.remote_versions(NAME) == [2, 3]
        triton.load_model(NAME)
        answer = triton.infer(NAME, x, OUTPUTS, model_version="3")
        assert_matches_model(answer.outputs, models[3], x)
        with pytest.raises(TritonInferenceError, match="does not serve the requested model"):
            triton.infer(NAME, x, OUTPUTS, model_version="1")
        config = triton.get_model_config(NAME)
        assert config["parameters"]["aios_champion_version"]["string_value"] == "2"
    finally:
        server.stop()


def test_an_upload_cut_off_midway_is_completed_by_the_next_push(
    bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "repository"
    local.mkdir()
    project(local, NAME, {1: _models()[1]}, champion=1)
    mirror = RepositoryMirror(f"s3://{bucket}/repo")
    mirror.push(local, NAME)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    version_files = sorted(fs.find(f"{bucket}/repo/{NAME}/1"))
    assert version_files
    fs.rm(version_files[-1])  # as if the copy had died before its last file

    repaired = mirror.push(local, NAME)
    assert repaired.uploaded_versions == (1,) and repaired.files == 2  # that file + the config
    assert sorted(fs.find(f"{bucket}/repo/{NAME}/1", refresh=True)) == version_files


def test_a_missing_bucket_fails_naming_the_url_and_file(s3: str, tmp_path: Path) -> None:
    local = tmp_path / "repository"
    local.mkdir()
    project(local, NAME, {1: _models()[1]}, champion=1)
    with pytest.raises(MirrorError, match=r"s3://no-such-bucket/repo|no-such-bucket/repo/mirrored"):
        RepositoryMirror("s3://no-such-bucket/repo").push(local, NAME)
