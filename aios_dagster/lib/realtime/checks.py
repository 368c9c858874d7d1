"""What Dagster checks of a handler: reconciliation of decisions, and the handler's lag.

The handler reports its figures (throughput, lag, latency) to the online store every
``report_every_s`` (and as observations of the predictions asset, see ``service``); the lag
check reads them there, so it works wherever the handler runs (a pod beside the Dagster
deployment) as long as both reach the store.
"""

from __future__ import annotations

import time

import dagster as dg

from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.lib.realtime.online_store import OnlineStoreResource
from aios_dagster.lib.realtime.reconcile import reconcile

HANDLERS = "handlers"  # online-store namespace: each handler's last report


def handler_asset(spec: HandlerSpec, connector: str) -> dg.AssetSpec:
    """The handler in the asset graph: an external asset (written by its own process, never by
    a run), downstream of the mail it lands, reported as it decides (``service.reporter``)."""
    return dg.AssetSpec(
        key=dg.AssetKey(spec.name),
        group_name="realtime",
        kinds={spec.source.get("kind", "events"), "triton"},
        description=f"{spec.description}\n\nDeclared in `{spec.path}`; runs as "
        f"`aios-dagster serve {spec.name}` and writes {spec.model}_predictions and the "
        "decision log. Its materializations are the handler's reports: decided, lag, latency.",
        deps=[dg.AssetKey(connector)],
        metadata={"model": spec.model, "connector": connector, "steps": ", ".join(spec.steps)},
    )


def handler_checks(spec: HandlerSpec, landed_dataset: str) -> list[dg.AssetChecksDefinition]:
    """``landed_dataset``: the handler's connector's dataset (its mail is ``raw_<this>``).

    Both checks are on the handler's own asset, so the batch jobs (which select the assets
    runs materialize) never run them; ``realtime_checks_job`` does.
    """
    predictions = dg.AssetKey(spec.name)
    landed = f"raw_{landed_dataset}"

    @dg.asset_check(
        asset=predictions,
        name=f"{spec.name}_reconciliation",
        description=f"Every email landed in {landed} in the last {spec.checks.window_days} days "
        f"(older than {spec.checks.grace_minutes} minutes) has exactly one current decision in "
        f"{spec.model}_predictions, whether the batch, micro-batch or real-time path made it.",
    )
    def _reconciliation(lake: LakeResource) -> dg.AssetCheckResult:
        result = reconcile(
            lake,
            landed_dataset=landed,
            predictions_dataset=f"{spec.model}_predictions",
            window_days=spec.checks.window_days,
            grace_minutes=spec.checks.grace_minutes,
        )
        return dg.AssetCheckResult(
            passed=result.passed,
            metadata={
                "landed": result.landed,
                "decided": result.decided,
                "missing": result.missing,
                "decided_twice": result.twice,
                "missing_sample": dg.MetadataValue.json(result.missing_sample),
                "twice_sample": dg.MetadataValue.json(result.twice_sample),
            },
        )

    @dg.asset_check(
        asset=predictions,
        name=f"{spec.name}_lag",
        description=f"Handler {spec.name} reported within {spec.checks.stale_after_s:.0f} s, is "
        f"at most {spec.checks.max_lag} events behind and decides within "
        f"{spec.checks.max_latency_s} s at p95.",
    )
    def _lag(online_store: OnlineStoreResource) -> dg.AssetCheckResult:
        store = online_store.open()
        try:
            status = store.get_many(HANDLERS, [spec.name]).get(spec.name)
        finally:
            store.close()
        if status is None:
            return dg.AssetCheckResult(
                passed=False, description=f"handler {spec.name} has never reported"
            )
        age = time.time() - float(status["reported_at"])
        lag = status.get("lag")
        p95 = status.get("latency_s_p95")
        problems = []
        if age > spec.checks.stale_after_s:
            problems.append(f"last report {age:.0f} s ago")
        if lag is not None and lag > spec.checks.max_lag:
            problems.append(f"{lag} events behind")
        if p95 is not None and p95 > spec.checks.max_latency_s:
            problems.append(f"p95 latency {p95:.1f} s")
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems) or None,
            metadata={
                "report_age_s": round(age, 1),
                **{k: v for k, v in status.items() if isinstance(v, int | float)},
            },
        )

    return [_reconciliation, _lag]


def handler_checks_job(spec: HandlerSpec) -> dg.UnresolvedAssetJobDefinition:
    """Both checks of the handler, and nothing else: what its schedule runs."""
    return dg.define_asset_job(
        f"{spec.name}_checks_job",
        selection=dg.AssetSelection.checks_for_assets(dg.AssetKey(spec.name)),
        description=f"Reconcile decisions and check the lag of real-time handler {spec.name}.",
        tags={"aios/handler": spec.name, **k8s_job_tags(f"{spec.name}_checks_job")},
    )


def handler_checks_schedule(spec: HandlerSpec) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{spec.name}_checks_schedule",
        job_name=f"{spec.name}_checks_job",
        cron_schedule=spec.checks.cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Run the checks of real-time handler {spec.name} on a schedule.",
    )
