"""Settings that decide how scoring reaches Triton: replicas and shared-memory tensors."""

from dataclasses import replace
from pathlib import Path

import pytest

from aios_dagster.resources import build_resources
from aios_dagster.settings import Settings


def test_shared_memory_is_on_only_for_a_loopback_server() -> None:
    local = Settings.from_env({})
    assert local.triton_shared_memory  # the embedded Triton on 127.0.0.1
    assert not replace(local, triton_grpc_url="triton.aios.svc:8001").triton_shared_memory
    assert not Settings.from_env({"AIOS_TRITON_SHARED_MEMORY": "off"}).triton_shared_memory
    remote = {"AIOS_TRITON_GRPC_URL": "10.0.0.5:8001", "AIOS_TRITON_SHARED_MEMORY": "true"}
    assert Settings.from_env(remote).triton_shared_memory  # forced: a sidecar sharing /dev/shm
    with pytest.raises(ValueError, match="AIOS_TRITON_SHARED_MEMORY"):
        _ = Settings.from_env({"AIOS_TRITON_SHARED_MEMORY": "maybe"}).triton_shared_memory


def test_replica_urls_reach_the_resource() -> None:
    settings = Settings.from_env(
        {
            "AIOS_TRITON_GRPC_URL": "triton-a:8001",
            "AIOS_TRITON_GRPC_URLS": "triton-b:8001, triton-c:8001",
        }
    )
    triton = build_resources(settings)["triton"]
    assert triton.replica_urls() == ["triton-a:8001", "triton-b:8001", "triton-c:8001"]
    assert not triton.shared_memory
    single = build_resources(Settings.from_env({}))["triton"]
    assert single.replica_urls() == ["127.0.0.1:8001"] and single.shared_memory


def test_the_data_folder_is_the_checkouts_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.data_dir == Path(__file__).resolve().parents[2] / "data"
    moved = Settings.from_env({"AIOS_PROJECT_DIR": str(tmp_path / "checkout")})
    assert moved.data_dir == tmp_path / "checkout" / "data"
    assert Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "d")}).data_dir == tmp_path / "d"


def test_the_triton_retry_budget_reaches_the_resource(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"AIOS_DATA_DIR": str(tmp_path), "AIOS_TRITON_RETRY_TOTAL_S": "12.5"}
    )
    assert build_resources(settings)["triton"].retry_total_s == 12.5


def test_the_model_repository_mirror_reaches_the_publishing_resource(tmp_path: Path) -> None:
    embedded = build_resources(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)}))["models"]
    assert embedded.mirror() is None  # embedded: Triton reads the local folder
    env = {"AIOS_DATA_DIR": str(tmp_path), "AIOS_MODEL_REPOSITORY_URL": "s3://models/repo"}
    models = build_resources(Settings.from_env(env))["models"]
    mirror = models.mirror()
    assert mirror is not None and mirror.url == "s3://models/repo"
    assert models.repository == str(tmp_path / "model_repository")
