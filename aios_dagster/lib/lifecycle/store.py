"""Where candidate models and the Triton model repository live."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dagster as dg

from aios_dagster.lib.serving.linear_model import LinearHeadsModel


class ModelStore(dg.ConfigurableResource):
    """Candidates (trained, not yet published) and the Triton model repository (published).

    In production ``repository`` is the volume or bucket the Triton fleet loads from.
    """

    repository: str
    candidates_dir: str

    def candidate_path(self, model_name: str) -> Path:
        return Path(self.candidates_dir) / model_name / "candidate.npz"

    def save_candidate(self, model_name: str, model: LinearHeadsModel, report: dict) -> Path:
        path = self.candidate_path(model_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Report first, weights last, each atomically: the publish step checks they match.
        tmp_json = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.json")
        tmp_json.write_text(json.dumps(report, indent=2, sort_keys=True))
        tmp_json.replace(path.with_suffix(".json"))
        tmp_npz = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npz")
        model.to_npz(tmp_npz)
        tmp_npz.replace(path)
        return path

    def load_candidate(self, model_name: str) -> tuple[LinearHeadsModel, dict]:
        path = self.candidate_path(model_name)
        if not path.exists():
            raise FileNotFoundError(f"no trained candidate for {model_name!r} at {path}")
        return LinearHeadsModel.from_npz(path), json.loads(path.with_suffix(".json").read_text())
