"""The Triton model repository as the registry's deployment projection, on a real Triton.

Versions are switched in the running server (explicit model control) by rewriting the
repository and asking for a load: no restart, the same process, and the old version stops
answering. The switch time printed by ``test_switch_time`` is what a rollback costs on Triton's
side once the registry has decided.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import (
    Projection,
    VersionConflictError,
    list_versions,
    project_versions,
    publish_linear_model,
)
from aios_dagster.lib.serving.triton import TritonInferenceError, TritonResource
from tests.triton_fixtures import assert_matches_model, random_features

HEADS = {"queue": 6, "priority": 3}
OUTPUTS = ["queue_probs", "priority_probs"]


def deployment(champion: int | None, challenger: int | None = None, share: str = "0.0") -> dict:
    return {
        "aios_champion_version": str(champion or ""),
        "aios_challenger_version": str(challenger or ""),
        "aios_canary_share": share,
    }


def project(
    repository: Path,
    name: str,
    versions: dict[int, LinearHeadsModel],
    champion: int | None,
    challenger: int | None = None,
    share: str = "0.0",
) -> Projection:
    return project_versions(
        repository,
        name,
        versions,
        parameters=deployment(champion, challenger, share),
        max_batch_size=256,
        input_name="features",
    )


@pytest.fixture(scope="module")
def models() -> dict[int, LinearHeadsModel]:
    return {v: LinearHeadsModel.random(16, HEADS, seed=40 + v) for v in (1, 2)}


def ready_versions(server: LocalTritonServer, name: str) -> dict[str, bool]:
    with grpcclient.InferenceServerClient(url=server.grpc_url) as client:
        return {v: client.is_model_ready(name, v) for v in ("1", "2")}


# -- on the real Triton -----------------------------------------------------------------------


def test_versions_load_and_unload_in_the_running_server(
    triton_server: LocalTritonServer,
    triton_repository: Path,
    triton_resource: TritonResource,
    models: dict[int, LinearHeadsModel],
) -> None:
    name = "projected"
    pid = triton_server.pid
    x = random_features(200, 16)

    first = project(triton_repository, name, {1: models[1]}, champion=1)
    assert (first.versions, first.written, first.pruned) == ((1,), (1,), ())
    triton_resource.load_model(name)
    served = triton_resource.infer(name, x, OUTPUTS, model_version="1")
    assert_matches_model(served.outputs, models[1], x)

    both = project(triton_repository, name, models, champion=1, challenger=2, share="0.25")
    assert (both.versions, both.written, both.pruned) == ((1, 2), (2,), ())
    triton_resource.load_model(name)
    assert ready_versions(triton_server, name) == {"1": True, "2": True}
    answers = {v: triton_resource.infer(name, x, OUTPUTS, model_version=v) for v in ("1", "2")}
    assert_matches_model(answers["1"].outputs, models[1], x)
    assert_matches_model(answers["2"].outputs, models[2], x)
    assert not np.allclose(answers["1"].outputs["queue_probs"], answers["2"].outputs["queue_probs"])
    # Why scorers pin the champion: unpinned requests go to the highest listed version.
    assert triton_resource.infer(name, x, OUTPUTS).model_version == "2"
    params = triton_resource.get_model_config(name)["parameters"]
    assert {k: v["string_value"] for k, v in params.items() if k.startswith("aios_")} == {
        "aios_champion_version": "1",
        "aios_challenger_version": "2",
        "aios_canary_share": "0.25",
    }

    promoted = project(triton_repository, name, {2: models[2]}, champion=2)
    assert (promoted.versions, promoted.written, promoted.pruned) == ((2,), (), (1,))
    triton_resource.load_model(name)
    assert ready_versions(triton_server, name) == {"1": False, "2": True}
    with pytest.raises(TritonInferenceError, match="does not serve the requested model"):
        triton_resource.infer(name, x, OUTPUTS, model_version="1")
    assert triton_resource.infer(name, x, OUTPUTS).model_version == "2"
    config = triton_resource.get_model_config(name)
    assert config["parameters"]["aios_champion_version"]["string_value"] == "2"
    # Triton's JSON leaves out empty strings (a protobuf default); readers default to "".
    assert config["parameters"]["aios_challenger_version"].get("string_value", "") == ""
    assert [int(v) for v in config["version_policy"]["specific"]["versions"]] == [2]
    assert list_versions(triton_repository, name) == [2]
    assert triton_server.pid == pid and triton_server.is_running()  # no restart


def test_switch_time(
    triton_server: LocalTritonServer,
    triton_repository: Path,
    triton_resource: TritonResource,
    models: dict[int, LinearHeadsModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Champion 1 <-> 2, each switch timed until the new version answers a pinned request."""
    name = "switched"
    pid = triton_server.pid
    x = random_features(64, 16)
    project(triton_repository, name, {1: models[1]}, champion=1)
    triton_resource.load_model(name)
    project_s, load_s, total_s = [], [], []
    for rep in range(6):
        version = 2 if rep % 2 == 0 else 1
        started = time.perf_counter()
        projection = project(triton_repository, name, {version: models[version]}, version)
        projected = time.perf_counter()
        triton_resource.load_model(name)
        answer = triton_resource.infer(name, x, OUTPUTS, model_version=str(version))
        done = time.perf_counter()
        assert projection.written == (version,) and projection.pruned == (3 - version,)
        assert answer.model_version == str(version)
        assert_matches_model(answer.outputs, models[version], x)
        project_s.append(projected - started)
        load_s.append(done - projected)
        total_s.append(done - started)
    assert ready_versions(triton_server, name) == {"1": True, "2": False}
    assert triton_server.pid == pid
    with capsys.disabled():
        print(
            f"\nswitch champion on Triton ({len(total_s)} reps): total median "
            f"{statistics.median(total_s):.3f}s max {max(total_s):.3f}s; "
            f"project median {statistics.median(project_s) * 1000:.1f}ms, "
            f"load+first answer median {statistics.median(load_s):.3f}s"
        )
    assert max(total_s) < 30.0, f"a switch took {max(total_s):.1f}s: {total_s}"


def test_no_request_fails_while_the_champion_switches(
    triton_server: LocalTritonServer,
    triton_repository: Path,
    triton_resource: TritonResource,
    models: dict[int, LinearHeadsModel],
) -> None:
    """Triton keeps serving the old version until the new one is ready: a rollback drops
    nothing. Requests here are unpinned, so each answer names the version that served it."""
    name = "switched_under_load"
    project(triton_repository, name, {2: models[2]}, champion=2)
    triton_resource.load_model(name)
    x = random_features(8, 16)
    stop = threading.Event()
    answers: list[str] = []

    def client_loop() -> None:
        with grpcclient.InferenceServerClient(url=triton_server.grpc_url) as client:
            tensor = grpcclient.InferInput("features", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            while not stop.is_set():
                try:
                    answers.append(client.infer(name, [tensor]).get_response().model_version)
                except Exception as exc:  # every failure is counted, none may happen
                    answers.append(f"error: {exc}")

    thread = threading.Thread(target=client_loop)
    thread.start()
    try:
        time.sleep(0.3)
        project(triton_repository, name, {1: models[1]}, champion=1)  # roll back to 1
        triton_resource.load_model(name)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    errors = [a for a in answers if a.startswith("error")]
    assert not errors, f"{len(errors)} of {len(answers)} requests failed: {errors[:3]}"
    assert answers[0] == "2" and answers[-1] == "1"
    assert "2" not in answers[answers.index("1") :]  # once switched, never back


# -- the repository on disk -------------------------------------------------------------------


def test_a_version_directory_is_immutable(
    tmp_path: Path, models: dict[int, LinearHeadsModel]
) -> None:
    project(tmp_path, "m", {1: models[1]}, champion=1)
    with pytest.raises(VersionConflictError) as excinfo:
        project(tmp_path, "m", {1: models[2]}, champion=1)
    message = str(excinfo.value)
    assert "'m' version 1" in message
    assert models[1].content_hash() in message and models[2].content_hash() in message
    assert LinearHeadsModel.from_npz(tmp_path / "m" / "1" / "weights.npz").content_hash() == (
        models[1].content_hash()
    )


def test_a_directory_written_by_publish_is_checked_too(
    tmp_path: Path, models: dict[int, LinearHeadsModel]
) -> None:
    publish_linear_model(tmp_path, "m", models[1])
    with pytest.raises(VersionConflictError, match="other weights"):
        project(tmp_path, "m", {1: models[2]}, champion=1)
    assert project(tmp_path, "m", {1: models[1]}, champion=1).written == ()


def test_projecting_the_same_state_again_writes_nothing(
    tmp_path: Path, models: dict[int, LinearHeadsModel]
) -> None:
    first = project(tmp_path, "m", models, champion=2, challenger=1, share="0.1")
    config = tmp_path / "m" / "config.pbtxt"
    mtime = config.stat().st_mtime_ns
    again = project(tmp_path, "m", models, champion=2, challenger=1, share="0.1")
    assert first.written == (1, 2) and first.config_changed
    assert (again.written, again.pruned, again.config_changed) == ((), (), False)
    assert config.stat().st_mtime_ns == mtime
    text = config.read_text()
    assert "version_policy: { specific { versions: [1, 2] } }" in text
    assert 'key: "aios_canary_share" value: { string_value: "0.1" }' in text
    assert not [p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".staging")]


def test_listed_versions_must_share_one_signature(tmp_path: Path) -> None:
    narrow = LinearHeadsModel.random(16, HEADS, seed=1)
    wide = LinearHeadsModel.random(20, HEADS, seed=2)
    with pytest.raises(ValueError, match="differ in feature names, heads or labels"):
        project(tmp_path, "m", {1: narrow, 2: wide}, champion=1, challenger=2)
    assert list_versions(tmp_path, "m") == []  # refused before anything was written


@pytest.mark.parametrize(
    ("parameters", "versions", "fragment"),
    [
        ({"aios_champion_version": "1", "aios_canary_share": "0.0"}, [1], "must set"),
        ({**deployment(1), "aios_canary": "0.5"}, [1], "unknown deployment parameter"),
        (deployment(2), [1], "must be exactly the champion"),
        (deployment(1), [1, 2], "must be exactly the champion"),
        ({**deployment(1), "aios_challenger_version": "1"}, [1], "both champion and challenger"),
        (deployment(1, 2, share="1.5"), [1, 2], "between 0 and 1"),
        (deployment(1, 2, share="half"), [1, 2], "between 0 and 1"),
        (deployment(1, share="0.2"), [1], "no challenger"),
        ({**deployment(1), "aios_champion_version": "01"}, [1], "leading zero"),
        ({**deployment(1), "delay_ms": 5}, [1], "must be a string"),
        ({**deployment(1), "labels_queue": "a,b"}, [1], "shadow a signature parameter"),
        (deployment(None), [1], "must be exactly the champion"),
    ],
)
def test_bad_deployment_parameters_are_refused(
    tmp_path: Path,
    models: dict[int, LinearHeadsModel],
    parameters: dict,
    versions: list[int],
    fragment: str,
) -> None:
    with pytest.raises(ValueError, match=fragment):
        project_versions(
            tmp_path,
            "m",
            {v: models[v] for v in versions},
            parameters=parameters,
            max_batch_size=8,
            input_name="features",
        )
    assert list_versions(tmp_path, "m") == []


def test_other_parameters_pass_through_and_a_challenger_may_stand_alone(
    tmp_path: Path, models: dict[int, LinearHeadsModel]
) -> None:
    projection = project_versions(
        tmp_path,
        "m",
        {2: models[2]},
        parameters={**deployment(None, 2, share="0.5"), "delay_ms": "5"},
        max_batch_size=8,
        input_name="features",
    )
    assert projection.parameters["delay_ms"] == "5"
    assert (
        'key: "delay_ms" value: { string_value: "5" }'
        in (tmp_path / "m" / "config.pbtxt").read_text()
    )


@pytest.mark.parametrize("versions", [{}, {0: None}, {True: None}])
def test_version_numbers_are_positive_integers(tmp_path: Path, versions: dict) -> None:
    with pytest.raises(ValueError, match=r"at least one version|positive integers"):
        project_versions(
            tmp_path, "m", versions, parameters=deployment(1), max_batch_size=8, input_name="x"
        )
