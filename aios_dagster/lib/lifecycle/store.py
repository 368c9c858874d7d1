"""Where the Triton model repository lives: the deployment projection of the registry."""

from __future__ import annotations

import dagster as dg

from aios_dagster.lib.serving.repository_mirror import RepositoryMirror


class ModelStore(dg.ConfigurableResource):
    """The Triton model repository the lifecycle projects the registry's aliases onto.

    Trained versions live in the MLflow registry (``ModelRegistry``); this folder only holds
    what Triton serves (champion and challenger). In production the Triton fleet loads from
    object storage: ``mirror_url`` (``s3://bucket/path``) receives a copy of each model's
    directory before Triton is told to load it.
    """

    repository: str
    mirror_url: str | None = None

    def mirror(self) -> RepositoryMirror | None:
        return RepositoryMirror(self.mirror_url) if self.mirror_url else None
