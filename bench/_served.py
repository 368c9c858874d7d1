"""What the Triton benchmarks share: a real local server serving one published linear model.

Kept out of the benchmark scripts so each of them times only its own comparison.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource


@contextlib.contextmanager
def served_model(
    model: LinearHeadsModel, name: str, *, batch_rows: int, concurrency: int, prefix: str
) -> Iterator[tuple[LocalTritonServer, TritonResource]]:
    """Publish ``model`` to a temporary repository, start Triton on it, yield a ready resource."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        repository = Path(tmp) / "repository"
        repository.mkdir()
        publish_linear_model(repository, name, model, max_batch_size=batch_rows)
        with LocalTritonServer(repository, Path(tmp) / "work") as server:
            resource = TritonResource(
                url=server.grpc_url, max_batch_rows=batch_rows, max_concurrency=concurrency
            )
            resource.wait_until_ready()
            resource.load_model(name)
            yield server, resource
