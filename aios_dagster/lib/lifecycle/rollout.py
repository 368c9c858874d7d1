"""Deploy, promote and roll back: registry aliases projected onto the Triton model repository.

The MLflow registry decides *which* version holds which alias; this module makes Triton serve
exactly that: the ``champion`` and, when there is one, the ``challenger`` version, listed by a
``specific`` version policy, with the aliases and the canary share as config parameters the
scorers read. Every alias change goes through the registry's audited ``set_alias`` (who, when,
why, previous version) before Triton is touched, so a crash in between leaves the registry
right and the next ``deploy`` (any of these commands, or the publish asset) brings Triton in
line with it.

Promotion refuses a version that failed the gate, and for a model whose risk class requires
it, one that no person has approved. Rollback restores the champion before the current one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.serving.projection import (
    CANARY_SHARE_PARAMETER,
    CHALLENGER_PARAMETER,
    CHAMPION_PARAMETER,
    project_versions,
)
from aios_dagster.lib.serving.repository_mirror import MirrorReport, RepositoryMirror
from aios_dagster.lib.serving.triton import TritonResource

CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_TAG = "gate"  # "passed" | "failed", set by the gate check on the version


class RolloutError(Exception):
    """A promotion or rollback that the registry's state does not allow; never retried."""


@dataclass(frozen=True)
class Deployment:
    """What Triton serves for a model after ``deploy``."""

    model_name: str
    champion: int | None
    challenger: int | None
    canary_share: float
    load_seconds: float
    mirrored: MirrorReport | None = None

    def parameters(self) -> dict[str, str]:
        return serving_parameters(self.champion, self.challenger, self.canary_share)


@dataclass(frozen=True)
class RolloutResult:
    """One audited alias change and the deployment it produced."""

    action: str
    model_name: str
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    seconds: float
    deployment: Deployment
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "from_version": self.from_version if self.from_version is not None else "none",
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "champion": self.deployment.champion or "none",
            "challenger": self.deployment.challenger or "none",
        }


def serving_parameters(
    champion: int | None, challenger: int | None, canary_share: float
) -> dict[str, str]:
    """The Triton config parameters the scorers route by (see ``lib/inference/batch.py``)."""
    return {
        CHAMPION_PARAMETER: str(champion or ""),
        CHALLENGER_PARAMETER: str(challenger or ""),
        CANARY_SHARE_PARAMETER: str(canary_share if challenger else 0.0),
    }


def deploy(
    spec: ModelSpec,
    *,
    registry: ModelRegistry,
    repository: Path,
    triton: TritonResource,
    mirror: RepositoryMirror | None = None,
) -> Deployment:
    """Make Triton serve the registry's champion and challenger of ``spec`` (idempotent).

    A challenger without a champion (a high-risk first version awaiting approval) is not
    served: scorers let the newest listed version decide when no champion is named, so
    serving it would let an unapproved version decide emails. It goes live on promotion.
    """
    champion = registry.get_alias(spec.name, CHAMPION)
    challenger = registry.get_alias(spec.name, CHALLENGER)
    if challenger == champion:
        challenger = None
    if champion is None and challenger is None:
        raise RolloutError(
            f"{spec.name}: the registry has neither a champion nor a challenger; "
            "nothing to deploy (train and gate a candidate first)"
        )
    if champion is None:
        return Deployment(spec.triton_model, None, challenger, 0.0, 0.0)
    versions = {v: registry.load_model(spec.name, v) for v in (champion, challenger) if v}
    share = spec.rollout.canary_share
    project_versions(
        repository,
        spec.triton_model,
        versions,
        parameters=serving_parameters(champion, challenger, share),
        max_batch_size=spec.max_batch_size,
        input_name=spec.input_tensor,
    )
    # Triton reads the bucket when told to load: the copy must be complete before that.
    mirrored = mirror.push(repository, spec.triton_model) if mirror else None
    started = time.perf_counter()
    triton.load_model(spec.triton_model)
    return Deployment(
        spec.triton_model,
        champion,
        challenger,
        share if challenger else 0.0,
        time.perf_counter() - started,
        mirrored,
    )


def require_gate_passed(registry: ModelRegistry, spec: ModelSpec, version: int) -> None:
    tags = registry.version_tags(spec.name, version)
    verdict = tags.get(GATE_TAG, "not run")
    if verdict != "passed":
        raise RolloutError(
            f"{spec.name} v{version}: the gate has not passed (gate: {verdict}); "
            "it cannot be promoted"
        )


def promote(
    spec: ModelSpec,
    *,
    registry: ModelRegistry,
    repository: Path,
    triton: TritonResource,
    mirror: RepositoryMirror | None = None,
    actor: str,
    reason: str,
    version: int | None = None,
) -> RolloutResult:
    """Make the challenger (or ``version``) the champion, audited, and serve it.

    Refuses a version whose gate did not pass, and for a model whose risk class requires a
    person's approval, one that is not approved (a rejection is final for that version).
    """
    started = time.perf_counter()
    target = version if version is not None else registry.get_alias(spec.name, CHALLENGER)
    if target is None:
        raise RolloutError(f"{spec.name}: there is no challenger to promote")
    current = registry.get_alias(spec.name, CHAMPION)
    if target == current:
        raise RolloutError(f"{spec.name} v{target} is already the champion")
    require_gate_passed(registry, spec, target)
    if spec.governance.approval_required:
        registry.require_approved(spec.name, target)
    registry.set_alias(spec.name, CHAMPION, target, actor=actor, reason=reason)
    if registry.get_alias(spec.name, CHALLENGER) == target:
        registry.clear_alias(
            spec.name, CHALLENGER, actor=actor, reason=f"promoted to {CHAMPION}: {reason}"
        )
    deployment = deploy(
        spec, registry=registry, repository=repository, triton=triton, mirror=mirror
    )
    return RolloutResult(
        "promote",
        spec.name,
        current,
        target,
        actor,
        reason,
        time.perf_counter() - started,
        deployment,
    )


def rollback(
    spec: ModelSpec,
    *,
    registry: ModelRegistry,
    repository: Path,
    triton: TritonResource,
    mirror: RepositoryMirror | None = None,
    actor: str,
    reason: str,
) -> RolloutResult:
    """Restore the champion before the current one, audited, and serve it."""
    started = time.perf_counter()
    current = registry.get_alias(spec.name, CHAMPION)
    previous = registry.previous_champion(spec.name)
    if current is None or previous is None:
        raise RolloutError(
            f"{spec.name}: no earlier champion to roll back to (champion: {current or 'none'})"
        )
    registry.set_alias(spec.name, CHAMPION, previous, actor=actor, reason=f"rollback: {reason}")
    if registry.get_alias(spec.name, CHALLENGER) == previous:
        registry.clear_alias(spec.name, CHALLENGER, actor=actor, reason="rolled back to champion")
    deployment = deploy(
        spec, registry=registry, repository=repository, triton=triton, mirror=mirror
    )
    return RolloutResult(
        "rollback",
        spec.name,
        current,
        previous,
        actor,
        reason,
        time.perf_counter() - started,
        deployment,
    )
