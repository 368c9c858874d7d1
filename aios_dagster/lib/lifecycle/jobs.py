"""Promote, roll back and review a model from the Dagster UI: jobs launched with config.

Dagster has no approval step of its own (dagster#14681); these jobs are thin wrappers over the
same audited functions the ``aios-dagster models`` commands call, so the UI and the CLI leave
the same record: the registry's alias history and approvals log, with who, when and why. Each
job also records an observation on ``<name>_published`` so the asset's page shows what Triton
serves now and why it changed. The ``actor`` is what the launcher types: open-source Dagster
has no user identity to take it from (Dagster+ would add the ``dagster/user`` tag).
"""

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.lifecycle.rollout import RolloutError, RolloutResult, promote, rollback
from aios_dagster.lib.lifecycle.store import ModelStore
from aios_dagster.lib.lifecycle.versions import shadow_record, write_card
from aios_dagster.lib.serving.triton import TritonResource


class RolloutConfig(dg.Config):
    actor: str = Field(description="Who asks for the change (recorded in the audit log).")
    reason: str = Field(description="Why (recorded in the audit log).")
    version: int | None = Field(
        default=None, description="Promote this version instead of the current challenger."
    )


class ReviewConfig(dg.Config):
    version: int = Field(description="The registry version reviewed.")
    decision: Literal["approved", "rejected"]
    actor: str = Field(description="The person deciding (recorded in the approvals log).")
    reason: str = Field(description="Why (recorded in the approvals log).")


def _observe(
    context: dg.OpExecutionContext,
    spec: ModelSpec,
    result: RolloutResult,
    shadow: dict | None = None,
) -> None:
    evidence = (
        {
            "shadow_days": len(shadow["days"]),
            "shadow_agreement": shadow["decision_agreement"],
        }
        if shadow
        else {}
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey(f"{spec.name}_published"),
            metadata={**result.metadata(), **evidence},
        )
    )
    context.log.info(
        f"{spec.name}: {result.action} v{result.from_version} -> v{result.to_version} "
        f"in {result.seconds:.2f}s"
    )


def _fail(exc: RolloutError) -> dg.Failure:
    return dg.Failure(str(exc), allow_retries=False)


def build_lifecycle_jobs(spec: ModelSpec) -> list[dg.JobDefinition]:
    @dg.op(name=f"{spec.name}_promote_op")
    def _promote(
        context: dg.OpExecutionContext,
        config: RolloutConfig,
        registry: ModelRegistry,
        models: ModelStore,
        triton: TritonResource,
        lake: LakeResource,
    ) -> None:
        try:
            result = promote(
                spec,
                registry=registry,
                repository=Path(models.repository),
                triton=triton,
                mirror=models.mirror(),
                actor=config.actor,
                reason=config.reason,
                version=config.version,
            )
        except RolloutError as exc:
            raise _fail(exc) from exc
        write_card(registry, spec, result.to_version, lake=lake)
        _observe(context, spec, result, shadow_record(lake, spec, result.to_version))

    @dg.op(name=f"{spec.name}_rollback_op")
    def _rollback(
        context: dg.OpExecutionContext,
        config: RolloutConfig,
        registry: ModelRegistry,
        models: ModelStore,
        triton: TritonResource,
    ) -> None:
        try:
            result = rollback(
                spec,
                registry=registry,
                repository=Path(models.repository),
                triton=triton,
                mirror=models.mirror(),
                actor=config.actor,
                reason=config.reason,
            )
        except RolloutError as exc:
            raise _fail(exc) from exc
        _observe(context, spec, result)

    @dg.op(name=f"{spec.name}_review_op")
    def _review(
        context: dg.OpExecutionContext,
        config: ReviewConfig,
        registry: ModelRegistry,
        lake: LakeResource,
    ) -> None:
        approval = registry.record_decision(
            spec.name, config.version, config.decision, actor=config.actor, reason=config.reason
        )
        write_card(registry, spec, config.version, lake=lake)
        context.log.info(f"{spec.name} v{config.version} {approval.decision} by {approval.actor}")

    @dg.job(
        name=f"{spec.name}_promote",
        description=f"Make the {spec.name} challenger champion.",
        tags=k8s_job_tags(f"{spec.name}_promote"),
    )
    def promote_job() -> None:
        _promote()

    @dg.job(
        name=f"{spec.name}_rollback",
        description=f"Restore the previous {spec.name} champion.",
        tags=k8s_job_tags(f"{spec.name}_rollback"),
    )
    def rollback_job() -> None:
        _rollback()

    @dg.job(
        name=f"{spec.name}_review",
        tags=k8s_job_tags(f"{spec.name}_review"),
        description=f"Approve or reject a {spec.name} version (who, when, why are recorded).",
    )
    def review_job() -> None:
        _review()

    return [promote_job, rollback_job, review_job]
