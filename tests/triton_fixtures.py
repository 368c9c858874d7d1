"""Pytest plugin: one real Triton server per test session, over a temporary model repository.

Nothing is faked: ``triton_server`` runs the ``tritonserver`` binary from the nvidia-pytriton
wheel. Starting it takes ~2 s and stopping ~3 s, so it is session-scoped and tests share it,
each publishing under its own model name. If it cannot start, every test that needs it FAILS
with the server's log tail; it is never skipped, because a skipped serving test hides a broken
serving stack.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aios_dagster.lib.inference.catalog import DecisionPolicy, HeadSpec, ModelSpec
from aios_dagster.lib.serving.launcher import LocalTritonServer, TritonStartError
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import PublishedVersion, publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource


@dataclass(frozen=True)
class PublishedModel:
    """A random model and where it was published."""

    model: LinearHeadsModel
    published: PublishedVersion

    @property
    def name(self) -> str:
        return self.published.model_name

    @property
    def output_names(self) -> list[str]:
        return [f"{head.name}_probs" for head in self.model.heads]


PublishFn = Callable[..., PublishedModel]


def start_or_fail(server: LocalTritonServer) -> LocalTritonServer:
    """Start ``server``; on failure fail the test with the log tail (never skip)."""
    try:
        return server.start()
    except TritonStartError as exc:
        pytest.fail(f"Triton server could not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model repository the session server serves."""
    return tmp_path_factory.mktemp("triton_repository")


@pytest.fixture(scope="session")
def triton_server(
    triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTritonServer]:
    """A started ``LocalTritonServer`` shared by the session; always stopped at the end."""
    server = LocalTritonServer(triton_repository, tmp_path_factory.mktemp("triton_work"))
    try:
        yield start_or_fail(server)
    finally:
        server.stop()


@pytest.fixture
def triton_resource(triton_server: LocalTritonServer) -> TritonResource:
    """A resource pointed at the session server, with a short backoff for fast tests."""
    return TritonResource(url=triton_server.grpc_url, retry_backoff_s=0.05)


@pytest.fixture
def publish_random_model(request: pytest.FixtureRequest, triton_repository: Path) -> PublishFn:
    """Publish a small random ``LinearHeadsModel`` into the session repository.

    Call it as ``publish_random_model(seed=0, n_features=16, heads={"queue": 6, ...},
    model_name=None, extra_parameters={"delay_ms": "50"})``. The default model name is derived
    from the test name so tests sharing the session server never see each other's versions. It
    does not load the model: tests decide when the server picks a version up
    (``TritonResource.load_model``).
    """
    default_name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60].strip("_")

    def publish(
        *,
        seed: int = 0,
        n_features: int = 16,
        heads: dict[str, int] | None = None,
        model_name: str | None = None,
        repository: Path | None = None,
        max_batch_size: int = 1024,
        extra_parameters: dict[str, str] | None = None,
    ) -> PublishedModel:
        model = LinearHeadsModel.random(n_features, heads or {"queue": 6, "priority": 3}, seed=seed)
        published = publish_linear_model(
            repository or triton_repository,
            model_name or default_name,
            model,
            max_batch_size=max_batch_size,
            extra_parameters=extra_parameters,
        )
        return PublishedModel(model, published)

    return publish


ServerFactory = Callable[[Path], LocalTritonServer]


@pytest.fixture
def triton_server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start private servers (over a given repository) that a test may kill and restart.

    Fault tests must not touch the session server. Each call starts a new server in its own
    work directory and fails the test if it cannot start; all of them are killed at teardown
    (``kill`` rather than ``stop``: nothing graceful is left to test and it is seconds faster).
    """
    servers: list[LocalTritonServer] = []

    def start(repository: Path) -> LocalTritonServer:
        server = LocalTritonServer(repository, tmp_path / f"triton_work_{len(servers)}")
        servers.append(server)
        return start_or_fail(server)

    try:
        yield start
    finally:
        for server in servers:
            server.kill()


ATOL = 1e-5


def random_features(n_rows: int, n_features: int, seed: int = 1) -> np.ndarray:
    """A float32 feature matrix, deterministic per seed."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 2.0, size=(n_rows, n_features)).astype(np.float32)


def assert_matches_model(
    outputs: dict[str, np.ndarray], model: LinearHeadsModel, x: np.ndarray
) -> None:
    """Every row present once and in order: element-wise equal to the in-process model."""
    expected = model.predict_proba(x)
    for head in model.heads:
        got = outputs[f"{head.name}_probs"]
        assert got.shape == (x.shape[0], len(head.labels))
        np.testing.assert_allclose(got, expected[head.name], atol=ATOL, rtol=0)


def dead_url() -> str:
    """A loopback gRPC address nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def numeric_spec(
    model: str,
    n_features: int,
    heads: tuple[str, ...] = ("queue", "priority"),
    input_tensor: str = "features",
) -> ModelSpec:
    """A model declaration scoring ``n_features`` numeric columns ``x0..`` with ``heads``."""
    return ModelSpec(
        name="t",
        triton_model=model,
        feature_table="f",
        training_table="t",
        id_column="id",
        time_column="ts",
        numeric_features=tuple(f"x{i}" for i in range(n_features)),
        vector_features=(),
        heads=tuple(HeadSpec(h, h) for h in heads),
        policy=DecisionPolicy("p", 0.5, "human_review"),
        input_tensor=input_tensor,
    )
