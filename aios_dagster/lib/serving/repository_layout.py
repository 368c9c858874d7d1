"""The on-disk layout of a Triton model repository: names, version directories, model cards.

Shared by the two writers (``model_repository.publish_linear_model`` and
``projection.project_versions``) so that both produce directories the other, Triton and the
Python backend read the same way::

    <repository>/<name>/config.pbtxt
    <repository>/<name>/<version>/weights.npz      # LinearHeadsModel.to_npz (both forms)
    <repository>/<name>/<version>/model.py         # python form: python_backend/model.py
    <repository>/<name>/<version>/model.onnx       # onnx form: onnx_export.to_onnx
    <repository>/<name>/<version>/model_card.json

Staging files and directories start with a dot: Triton ignores non-numeric entries of a model
directory, so a crash mid-write leaves nothing it would try to load.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aios_dagster.lib.serving.config_render import DEFAULT_INPUT_NAME, ServingForm
from aios_dagster.lib.serving.linear_model import LinearHeadsModel

CONFIG_FILE = "config.pbtxt"
WEIGHTS_FILE = "weights.npz"
MODEL_CARD_FILE = "model_card.json"
BACKEND_FILE = "model.py"
ONNX_FILE = "model.onnx"
STAGING_PREFIX = ".staging-"

#: The file that tells a version directory's form apart.
FORM_FILES: dict[str, str] = {"python": BACKEND_FILE, "onnx": ONNX_FILE}


def check_model_name(model_name: str) -> None:
    """Refuse a model name that is not a safe directory name and URL path segment."""
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
    """Version numbers with a directory under ``model_name``, ascending (empty if none)."""
    model_dir = Path(repository) / model_name
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0
    )


def read_model_card(repository: Path, model_name: str, version: int) -> dict[str, Any]:
    """The ``model_card.json`` of one version directory."""
    path = Path(repository) / model_name / str(version) / MODEL_CARD_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def card_input_name(card: dict[str, Any]) -> str:
    """The input tensor a card's version was written for."""
    # Versions published before the name was recorded were served as "features".
    return str(card.get("input_name", DEFAULT_INPUT_NAME))


def head_meta(model: LinearHeadsModel) -> list[dict[str, object]]:
    """Heads and their labels, in output order, as cards and signatures record them."""
    return [{"name": h.name, "labels": list(h.labels)} for h in model.heads]


def _signature(feature_names: list[str], heads: list[dict[str, object]], input_name: str) -> str:
    return json.dumps(
        {"feature_names": feature_names, "heads": heads, "input_name": input_name},
        sort_keys=True,
    )


def signature(model: LinearHeadsModel, input_name: str) -> str:
    """What a config states about the versions it lists: one config serves one signature."""
    return _signature(list(model.feature_names), head_meta(model), input_name)


def card_signature(card: dict[str, Any]) -> str | None:
    """The signature a card records, or None for a card too old or damaged to say."""
    try:
        return _signature(list(card["feature_names"]), list(card["heads"]), card_input_name(card))
    except (KeyError, TypeError):
        return None


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a concurrent reader sees the old or the new text."""
    tmp = path.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _backend_source() -> bytes:
    return (
        resources.files("aios_dagster.lib.serving")
        .joinpath("python_backend")
        .joinpath(BACKEND_FILE)
        .read_bytes()
    )


def stage_version_files(
    staging: Path, model: LinearHeadsModel, *, form: ServingForm, input_name: str
) -> None:
    """Write what Triton runs for ``form`` into ``staging``; the weights go in both forms.

    The ONNX form keeps ``weights.npz`` beside ``model.onnx`` so that an existing version
    directory of either form can be checked against the registry by content hash.
    """
    if form not in FORM_FILES:
        raise ValueError(f"serving form {form!r} is not one of {sorted(FORM_FILES)}")
    model.to_npz(staging / WEIGHTS_FILE)
    if form == "python":
        (staging / BACKEND_FILE).write_bytes(_backend_source())
    else:
        # sklearn and onnx take seconds to import: only a caller that writes ONNX pays.
        from aios_dagster.lib.serving.onnx_export import to_onnx

        (staging / ONNX_FILE).write_bytes(to_onnx(model, input_name))


def write_model_card(
    staging: Path,
    model_name: str,
    version: int,
    model: LinearHeadsModel,
    *,
    input_name: str,
    max_batch_size: int,
    form: ServingForm = "python",
) -> None:
    """``model_card.json``: what a version directory holds and for which signature."""
    card = {
        "model_name": model_name,
        "version": version,
        "content_hash": model.content_hash(),
        "created_at": datetime.now(UTC).isoformat(),
        "n_features": model.n_features,
        "input_name": input_name,
        "feature_names": list(model.feature_names),
        "heads": head_meta(model),
        "max_batch_size": max_batch_size,
        "form": form,
    }
    (staging / MODEL_CARD_FILE).write_text(
        json.dumps(card, indent=2, sort_keys=True), encoding="utf-8"
    )


def version_form(version_dir: Path) -> str | None:
    """``"python"`` or ``"onnx"`` by the file Triton runs, None if neither is there."""
    found = [form for form, name in FORM_FILES.items() if (version_dir / name).is_file()]
    return found[0] if len(found) == 1 else None
