"""Writing ``LinearHeadsModel`` versions into a Triton model repository.

Two writers share the layout and its guarantees:

* ``project_versions`` (``projection.py``, re-exported here) makes the repository the
  deployment projection of the model registry: exactly the registry's champion and challenger,
  numbered as the registry numbers them, in the Python or the ONNX form.
* ``publish_linear_model`` (here) numbers versions itself (next integer) and keeps earlier ones
  servable; it predates the registry and serves callers that have none.

The layout (``<name>/config.pbtxt``, ``<name>/<version>/...``) and the version-directory
helpers are in ``repository_layout.py``, the config text in ``config_render.py``.

Why it works this way:

* **Versions are immutable**: a version directory is written once, never overwritten.
* **Idempotent publishing**: publishing weights whose ``content_hash`` equals the newest
  version's writes nothing, so a re-materialised training asset does not create version churn.
* **Atomic**: a version is assembled in a hidden staging directory inside the model directory
  (same filesystem) and renamed into place, and ``config.pbtxt`` is replaced with
  ``os.replace``; a Triton that loads concurrently never sees a half-written version. Triton
  ignores non-numeric subdirectories of a model directory.
* **The config is the contract remote clients read**: the input tensor's name, labels
  (``labels_<head>``) and ``feature_names`` are in it, so a client only needs the gRPC URL; the
  backend reads its input name from it too. Triton needs fixed input dims, so if a publish
  changes the *signature* (input name, feature names, heads or labels), older versions with
  another signature would be served under a config that lies about them. In that case the
  policy becomes ``specific { versions: [...] }`` listing only the versions whose signature
  matches the newest; otherwise it is ``all {}``. A signature change is a breaking change: roll
  back across it by re-publishing the old weights (which become a new version).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aios_dagster.lib.serving.config_render import (
    DEFAULT_INPUT_NAME,
    check_input_name,
    render_config,
)
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.projection import Projection, VersionConflictError, project_versions
from aios_dagster.lib.serving.repository_layout import (
    CONFIG_FILE,
    STAGING_PREFIX,
    card_input_name,
    card_signature,
    check_model_name,
    list_versions,
    read_model_card,
    signature,
    stage_version_files,
    write_atomic,
    write_model_card,
)

__all__ = [
    "DEFAULT_INPUT_NAME",
    "Projection",
    "PublishedVersion",
    "VersionConflictError",
    "list_versions",
    "project_versions",
    "publish_linear_model",
    "read_model_card",
    "render_config",
]

_MAX_PUBLISH_ATTEMPTS = 5


@dataclass(frozen=True)
class PublishedVersion:
    """Result of ``publish_linear_model``; ``created`` is False for an idempotent no-op."""

    model_name: str
    version: int
    content_hash: str
    path: Path
    created: bool


def publish_linear_model(
    repository: Path,
    model_name: str,
    model: LinearHeadsModel,
    *,
    max_batch_size: int = 1024,
    extra_parameters: Mapping[str, str] | None = None,
    input_name: str = DEFAULT_INPUT_NAME,
) -> PublishedVersion:
    """Publish ``model`` as the next version of ``model_name`` (or no-op if unchanged).

    Returns the new version, or the newest existing one with ``created=False`` when its
    content hash equals ``model.content_hash()``. The server only picks the version up on the
    next explicit ``load_model`` (``TritonResource.load_model``). ``extra_parameters`` are
    written into the config as string parameters (see ``render_config``); they describe the
    serving setup, not the weights, so they do not take part in the content hash (re-publishing
    identical weights stays a no-op that leaves the config untouched). ``input_name`` is the
    input tensor's name: part of the signature, so the same weights under another name are a
    new version.
    """
    check_model_name(model_name)
    check_input_name(input_name)
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    repository = Path(repository)
    model_dir = repository / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    content_hash = model.content_hash()

    existing = list_versions(repository, model_name)
    if existing:
        newest = existing[-1]
        try:
            card = read_model_card(repository, model_name, newest)
            same = card.get("content_hash") == content_hash
            same = same and card_input_name(card) == input_name
        except (OSError, ValueError):
            same = False
        if same:
            return PublishedVersion(
                model_name, newest, content_hash, model_dir / str(newest), created=False
            )

    staging = model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        stage_version_files(staging, model, form="python", input_name=input_name)
        version = 0
        for _ in range(_MAX_PUBLISH_ATTEMPTS):
            versions_now = list_versions(repository, model_name)
            version = (versions_now[-1] if versions_now else 0) + 1
            write_model_card(
                staging,
                model_name,
                version,
                model,
                input_name=input_name,
                max_batch_size=max_batch_size,
            )
            try:
                # Atomic on one filesystem; fails if a concurrent publisher took the number.
                staging.rename(model_dir / str(version))
                break
            except OSError:
                continue
        else:
            raise RuntimeError(
                f"could not claim a version number for {model_name!r} after "
                f"{_MAX_PUBLISH_ATTEMPTS} attempts (concurrent publishers?)"
            )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    # Keep every version servable unless its signature differs from the one the config states.
    current = signature(model, input_name)
    compatible: list[int] = []
    all_compatible = True
    for v in list_versions(repository, model_name):
        try:
            sig = card_signature(read_model_card(repository, model_name, v))
        except (OSError, ValueError):
            sig = None
        if sig == current:
            compatible.append(v)
        else:
            all_compatible = False
    config = render_config(
        model_name,
        model,
        max_batch_size=max_batch_size,
        versions=None if all_compatible else compatible,
        extra_parameters=extra_parameters,
        input_name=input_name,
    )
    config_path = model_dir / CONFIG_FILE
    if not config_path.exists() or config_path.read_text(encoding="utf-8") != config:
        write_atomic(config_path, config)
    return PublishedVersion(
        model_name, version, content_hash, model_dir / str(version), created=True
    )
