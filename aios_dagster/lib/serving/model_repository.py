"""Publishing ``LinearHeadsModel`` versions into a Triton model repository.

Layout written for a model ``<name>``::

    <repository>/<name>/config.pbtxt          # python backend, batching, labels as parameters
    <repository>/<name>/<version>/model.py    # copy of python_backend/model.py
    <repository>/<name>/<version>/weights.npz # LinearHeadsModel.to_npz
    <repository>/<name>/<version>/model_card.json

Why it works this way:

* **Versions are immutable and numbered** (next integer), and ``version_policy`` keeps earlier
  versions servable so a rollback is a request for an explicit version, not a re-deploy.
* **Idempotent**: publishing weights whose ``content_hash`` equals the newest version's writes
  nothing, so a re-materialised training asset does not create version churn.
* **Atomic**: a version is assembled in a hidden staging directory inside the model directory
  (same filesystem) and renamed into place, and ``config.pbtxt`` is replaced with
  ``os.replace``; a Triton that loads concurrently never sees a half-written version. Triton
  ignores non-numeric subdirectories of a model directory.
* **The config is the contract remote clients read**: the input tensor's name, labels
  (``labels_<head>``) and ``feature_names`` are in it, so a client only needs the gRPC URL; the
  backend reads its input name from it too. The config describes the newest version and is
  rewritten on every publish. Triton needs fixed input dims, so if a publish changes the
  *signature* (input name, feature names, heads or labels), older versions with another
  signature would be served under a config that lies about them. In that case the policy
  becomes ``specific { versions: [...] }`` listing only the versions whose signature matches
  the newest; otherwise it is ``all {}``. A signature change is a breaking change: roll back
  across it by re-publishing the old weights (which become a new version).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aios_dagster.lib.serving.linear_model import LinearHeadsModel

CONFIG_FILE = "config.pbtxt"
WEIGHTS_FILE = "weights.npz"
MODEL_CARD_FILE = "model_card.json"
BACKEND_FILE = "model.py"
DEFAULT_INPUT_NAME = "features"
_TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STAGING_PREFIX = ".staging-"
_MAX_PUBLISH_ATTEMPTS = 5


@dataclass(frozen=True)
class PublishedVersion:
    """Result of ``publish_linear_model``; ``created`` is False for an idempotent no-op."""

    model_name: str
    version: int
    content_hash: str
    path: Path
    created: bool


def _check_model_name(model_name: str) -> None:
    if (
        not model_name
        or model_name.startswith(".")
        or not model_name.replace("_", "").replace("-", "").isalnum()
    ):
        raise ValueError(
            f"model name {model_name!r} must be alphanumeric with '_' or '-' "
            "(it is a directory name and a URL path segment)"
        )


def list_versions(repository: Path, model_name: str) -> list[int]:
    """Published version numbers of ``model_name``, ascending (empty if none)."""
    model_dir = Path(repository) / model_name
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0
    )


def read_model_card(repository: Path, model_name: str, version: int) -> dict[str, Any]:
    """The ``model_card.json`` of one published version."""
    path = Path(repository) / model_name / str(version) / MODEL_CARD_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def _check_input_name(input_name: str) -> None:
    if not _TENSOR_NAME.match(input_name):
        raise ValueError(
            f"input tensor name {input_name!r} must be a letter or '_' followed by letters, "
            "digits or '_'"
        )


def _card_input_name(card: dict[str, Any]) -> str:
    # Versions published before the name was recorded were served as "features".
    return str(card.get("input_name", DEFAULT_INPUT_NAME))


def _signature(feature_names: list[str], heads: list[dict[str, object]], input_name: str) -> str:
    return json.dumps(
        {"feature_names": feature_names, "heads": heads, "input_name": input_name},
        sort_keys=True,
    )


def _card_signature(card: dict[str, Any]) -> str | None:
    try:
        return _signature(list(card["feature_names"]), list(card["heads"]), _card_input_name(card))
    except (KeyError, TypeError):
        return None


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid protobuf text-format string


def render_config(
    model_name: str,
    model: LinearHeadsModel,
    *,
    max_batch_size: int,
    versions: list[int] | None,
    extra_parameters: Mapping[str, str] | None = None,
    input_name: str = DEFAULT_INPUT_NAME,
) -> str:
    """``config.pbtxt`` text; ``versions=None`` means ``version_policy: { all {} }``.

    ``input_name`` names the one input tensor (the catalog's ``input_tensor``); the backend
    reads it from this config.

    ``extra_parameters`` become further string parameters the backend reads (``delay_ms``
    for fault drills); they may not shadow the signature parameters clients rely on.
    """
    _check_input_name(input_name)
    if versions is None:
        policy = "version_policy: { all {} }"
    else:
        policy = f"version_policy: {{ specific {{ versions: [{', '.join(map(str, versions))}] }} }}"
    outputs = ",\n".join(
        f"  {{ name: {_quote(h.output_name)} data_type: TYPE_FP32 dims: [ {len(h.labels)} ] }}"
        for h in model.heads
    )
    params = [("feature_names", ",".join(model.feature_names))]
    params += [(f"labels_{h.name}", ",".join(h.labels)) for h in model.heads]
    for key, value in (extra_parameters or {}).items():
        if key in dict(params):
            raise ValueError(f"extra parameter {key!r} would shadow a signature parameter")
        params.append((key, str(value)))
    parameters = "\n".join(
        f"parameters: {{ key: {_quote(k)} value: {{ string_value: {_quote(v)} }} }}"
        for k, v in params
    )
    return (
        f"# Written by aios_dagster.lib.serving.model_repository; describes the newest version.\n"
        f"name: {_quote(model_name)}\n"
        f'backend: "python"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"{policy}\n"
        f"input [\n"
        f"  {{ name: {_quote(input_name)} data_type: TYPE_FP32 dims: [ {model.n_features} ] }}\n"
        f"]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{ }}\n"
        f"instance_group [ {{ kind: KIND_CPU count: 1 }} ]\n"
        f"{parameters}\n"
    )


def _backend_source() -> bytes:
    return (
        resources.files("aios_dagster.lib.serving")
        .joinpath("python_backend")
        .joinpath(BACKEND_FILE)
        .read_bytes()
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{_STAGING_PREFIX}{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
    _check_model_name(model_name)
    _check_input_name(input_name)
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
            same = same and _card_input_name(card) == input_name
        except (OSError, ValueError):
            same = False
        if same:
            return PublishedVersion(
                model_name, newest, content_hash, model_dir / str(newest), created=False
            )

    meta_heads: list[dict[str, object]] = [
        {"name": h.name, "labels": list(h.labels)} for h in model.heads
    ]
    staging = model_dir / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        (staging / BACKEND_FILE).write_bytes(_backend_source())
        model.to_npz(staging / WEIGHTS_FILE)
        version = 0
        for _ in range(_MAX_PUBLISH_ATTEMPTS):
            versions_now = list_versions(repository, model_name)
            version = (versions_now[-1] if versions_now else 0) + 1
            card = {
                "model_name": model_name,
                "version": version,
                "content_hash": content_hash,
                "created_at": datetime.now(UTC).isoformat(),
                "n_features": model.n_features,
                "input_name": input_name,
                "feature_names": list(model.feature_names),
                "heads": meta_heads,
                "max_batch_size": max_batch_size,
            }
            (staging / MODEL_CARD_FILE).write_text(
                json.dumps(card, indent=2, sort_keys=True), encoding="utf-8"
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
    signature = _signature(list(model.feature_names), meta_heads, input_name)
    compatible: list[int] = []
    all_compatible = True
    for v in list_versions(repository, model_name):
        try:
            sig = _card_signature(read_model_card(repository, model_name, v))
        except (OSError, ValueError):
            sig = None
        if sig == signature:
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
        _write_atomic(config_path, config)
    return PublishedVersion(
        model_name, version, content_hash, model_dir / str(version), created=True
    )
