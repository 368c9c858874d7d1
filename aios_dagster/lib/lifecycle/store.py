"""Where the Triton model repository lives: the deployment projection of the registry."""

import dagster as dg


class ModelStore(dg.ConfigurableResource):
    """The Triton model repository the lifecycle projects the registry's aliases onto.

    Trained versions live in the MLflow registry (``ModelRegistry``); this folder only holds
    what Triton serves (champion and challenger). In production ``repository`` is the volume
    or bucket the Triton fleet loads from.
    """

    repository: str
