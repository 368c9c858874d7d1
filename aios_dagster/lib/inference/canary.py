"""Which model version decides a record: the deployment Triton announces, and canary routing.

The registry's ``champion`` and ``challenger`` aliases are projected into the Triton model
config as string parameters, so every scorer (batch, micro-batch, real time) learns them from
the config it already reads for the signature check, without asking the registry:

* ``aios_champion_version``: the version that decides normal rows;
* ``aios_challenger_version``: the version in shadow or canary ("" when none);
* ``aios_canary_share``: the share of records the challenger decides ("0.0": shadow only).

A model without these parameters is served as before: the newest version decides every row.

Canary routing is a pure function of (model, record id): a re-run, a retry, a micro-batch and
the real-time runtime all send the same email to the same version, and the share of a large set
of ids is the configured share within sampling error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aios_dagster.lib.serving.errors import TritonPermanentError
from aios_dagster.lib.serving.projection import (
    CANARY_SHARE_PARAMETER,
    CHALLENGER_PARAMETER,
    CHAMPION_PARAMETER,
)


class DeploymentConfigError(TritonPermanentError, ValueError):
    """The deployment parameters in Triton's model config are not valid (never retried)."""


def canary_bucket(model_name: str, record_id: str) -> float:
    """The record's place in [0, 1): it goes to the challenger iff this is below the share.

    ``model_name`` is the served (Triton) model name, as decision rows record it, so two
    models canarying at once pick independent sets of records.
    """
    digest = hashlib.sha256(f"{model_name}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def canary_mask(model_name: str, record_ids: Sequence[str], share: float) -> np.ndarray:
    """Boolean per record: decided by the challenger at ``share``."""
    if share <= 0.0:
        return np.zeros(len(record_ids), dtype=bool)
    return np.fromiter(
        (canary_bucket(model_name, rid) < share for rid in record_ids),
        dtype=bool,
        count=len(record_ids),
    )


@dataclass(frozen=True)
class Deployment:
    """The versions that decide, as Triton's model config announced them.

    ``champion=""`` means no projection parameters: the version Triton's policy serves newest.
    A scorer pins one ``Deployment`` for a unit of work (a day, a micro-batch) so a promotion
    mid-way cannot mix versions in it.
    """

    champion: str = ""
    challenger: str = ""
    canary_share: float = 0.0

    @property
    def canary(self) -> bool:
        """Whether some records are decided by the challenger."""
        return bool(self.challenger) and self.canary_share > 0.0

    @classmethod
    def from_config(cls, model_name: str, config: Mapping[str, Any]) -> Deployment:
        """Read the parameters; a malformed one fails naming the model and the parameter.

        ``project_versions`` validates them when it writes the config; they are checked again
        here because a config may have been edited by hand. A share without a challenger
        routes nothing (there is no second version to route to).
        """
        params: Mapping[str, Mapping[str, str]] = config.get("parameters", {})

        def value(key: str) -> str:
            return str(params.get(key, {}).get("string_value", "")).strip()

        champion, challenger = value(CHAMPION_PARAMETER), value(CHALLENGER_PARAMETER)
        for key, version in ((CHAMPION_PARAMETER, champion), (CHALLENGER_PARAMETER, challenger)):
            if version and not (version.isdigit() and int(version) > 0):
                raise DeploymentConfigError(
                    f"model {model_name!r}: config parameter {key} must be a version number "
                    f"or empty, not {version!r}"
                )
        share_text = value(CANARY_SHARE_PARAMETER) or "0"
        try:
            share = float(share_text)
        except ValueError:
            share = float("nan")
        if not 0.0 <= share <= 1.0:
            raise DeploymentConfigError(
                f"model {model_name!r}: config parameter {CANARY_SHARE_PARAMETER} must be a "
                f"number between 0 and 1, not {share_text!r}"
            )
        return cls(champion=champion, challenger=challenger, canary_share=share)
