"""The Dagster objects one declared connector becomes (built by ``ConnectorComponent``).

An asset (kind tags, owners, group) that lands new source records under the connector's
contract, a blocking contract check on it, and a sensor polling the source. Nothing here knows a
particular source.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.connectors.cursors import ConnectorBusyError, CursorStore
from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.runtime import build_reader, run_connector
from aios_dagster.lib.connectors.source import PermanentSourceError, TransientSourceError
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.landing import (
    QUARANTINE_SCHEMA,
    count_records,
    quarantine_dataset,
    read_quarantine,
)
from aios_dagster.lib.contracts.runner import validate_frame
from aios_dagster.lib.contracts.store import ContractStore
from aios_dagster.lib.lake import LakeResource


def declared_in(spec: ConnectorSpec) -> str:
    """Where a reader finds the declaration: ``defs/ingest/raw_emails/defs.yaml``."""
    parts = Path(spec.path or f"{spec.name}/defs.yaml").parts
    return "/".join(parts[-4:]) if "defs" in parts[-4:-1] else "/".join(parts[-2:])


def build_connector_asset(spec: ConnectorSpec) -> dg.AssetsDefinition:
    kinds = {spec.kind, "parquet"}
    if spec.kind == "sql":
        kinds.add("sql")

    @dg.asset(
        name=spec.name,
        group_name=spec.group,
        kinds=kinds,
        owners=spec.owners,
        tags=spec.tags,
        description=f"{spec.description}\n\nDeclared in `{declared_in(spec)}` "
        f"(kind `{spec.kind}`), contract `expectations/{spec.contract}.json`.",
        metadata={"connector": spec.name, "contract": spec.contract},
    )
    def _connector(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        pii: PiiMasker,
        contracts: ContractStore,
        cursors: CursorStore,
    ) -> dg.MaterializeResult:
        contract = contracts.load(spec.contract)
        reader = build_reader(spec)
        try:
            report = run_connector(
                spec, reader, contract, lake=lake, pii=pii, cursors=cursors, log=context.log
            )
        except TransientSourceError as exc:
            # The source layer already retried within its budget (lib/retry.py); retrying the
            # step as well would multiply attempts. Batches landed before the failure keep their
            # cursor, so the trigger's next run resumes after them.
            raise dg.Failure(
                description=f"connector {spec.name}: source still failing after retries: {exc}",
                allow_retries=False,
            ) from exc
        except ConnectorBusyError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except PermanentSourceError as exc:
            raise dg.Failure(
                description=f"connector {spec.name}: {exc}",
                metadata={"source": exc.source, "record": exc.record or "", "reason": exc.reason},
                allow_retries=False,
            ) from exc
        # The blocking check validates exactly these parts (what this run landed).
        landed_parts = dg.MetadataValue.json(report.parts)
        return dg.MaterializeResult(
            metadata={**report.metadata(contract), LANDED_PARTS: landed_parts}
        )

    return _connector


LANDED_PARTS = "landed_parts"


def build_contract_check(spec: ConnectorSpec) -> dg.AssetChecksDefinition:
    dataset = spec.dataset
    key = dg.AssetKey(spec.name)

    @dg.asset_check(
        asset=key,
        name=f"{dataset}_contract",
        blocking=True,
        description=f"Great Expectations contract expectations/{dataset}.json on the rows this "
        "run landed (newest copy of each record), and their quarantine within the contract's "
        "tolerance. Run on its own, it validates the whole dataset.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lake: LakeResource, contracts: ContractStore
    ) -> dg.AssetCheckResult:
        contract = contracts.load(dataset)
        parts = parts_landed_by_run(context, key)
        raw = read_parts(lake, f"raw_{dataset}", parts)
        # Nothing landed (a new optional source, or every record quarantined): the contract
        # still runs, on zero rows, and the quarantine rate decides.
        landed = (
            latest_records(raw, contract.record_id)
            if raw is not None
            else pd.DataFrame(columns=list(spec.schema_))
        )
        quarantined = (
            read_quarantine(lake, dataset)
            if parts is None
            else read_parts(lake, quarantine_dataset(dataset), parts)
        )
        if quarantined is None:
            quarantined = pd.DataFrame(columns=QUARANTINE_SCHEMA.names)
        result = validate_frame(landed, contract, source=f"lake/raw_{dataset}")
        bad_records = count_records(quarantined)
        total = len(landed) + bad_records
        fraction = bad_records / total if total else 0.0
        failures = [o.rule for o in result.outcomes if not o.success]
        passed = not failures and fraction <= contract.max_quarantine_fraction
        sample = quarantined.drop(columns=["record"], errors="ignore").head(5)
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR
            if contract.blocking
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "contract": f"{contract.name}@v{contract.version}",
                "scope": "whole dataset" if parts is None else f"{len(parts)} parts of this run",
                "rows_landed": len(landed),
                "records_quarantined": int(bad_records),
                "quarantine_fraction": round(fraction, 6),
                "max_quarantine_fraction": contract.max_quarantine_fraction,
                "failed_rules_on_landed_rows": failures,
                "quarantine_by_rule": dg.MetadataValue.json(
                    quarantined.groupby("rule").size().to_dict() if len(quarantined) else {}
                ),
                "quarantine_sample": dg.MetadataValue.json(sample.to_dict("records")),
            },
        )

    return _check


def parts_landed_by_run(
    context: dg.AssetCheckExecutionContext, key: dg.AssetKey
) -> list[str] | None:
    """The lake parts the asset wrote in this run, or None when it did not run in this run
    (a check launched alone re-validates everything)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.run_id != context.run.run_id or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(LANDED_PARTS)
    return None if value is None else list(value.value)  # type: ignore[arg-type]


def read_parts(lake: LakeResource, dataset: str, parts: list[str] | None) -> pd.DataFrame | None:
    """The named parts of a dataset (all parts when ``parts`` is None); None when none exist."""
    if parts is None:
        return lake.read(dataset).to_pandas() if lake.parts(dataset) else None
    tables = [pq.read_table(lake.part_path(dataset, p)) for p in parts if lake.exists(dataset, p)]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def ingest_job_name(connector: str) -> str:
    """The job a connector's trigger runs when its YAML names none."""
    return f"ingest_{connector}_job"


def build_connector_sensor(spec: ConnectorSpec, job_name: str) -> dg.SensorDefinition:
    """Poll the source's ``has_new`` and launch ``job_name``, never while one of its runs is
    active. The job is named, not passed: it may come from another Component or module."""
    trigger = spec.trigger.sensor
    assert trigger is not None

    @dg.sensor(
        name=f"{spec.name}_sensor",
        job_name=job_name,
        minimum_interval_seconds=trigger.minimum_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING
        if trigger.default_running
        else dg.DefaultSensorStatus.STOPPED,
        description=f"Runs {job_name} when {spec.name}'s source has records after its cursor.",
    )
    def _sensor(context: dg.SensorEvaluationContext, cursors: CursorStore) -> dg.SensorResult:
        active = context.instance.get_runs(
            filters=dg.RunsFilter(
                job_name=job_name,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            ),
            limit=1,
        )
        if active:
            # One run at a time per source: the next evaluation picks up what it leaves.
            return dg.SensorResult(skip_reason=f"{job_name} run {active[0].run_id} in progress")
        reader = build_reader(spec)
        try:
            fresh = reader.has_new(cursors.load(spec.name))
        except TransientSourceError as exc:
            # The next tick is the retry; a sensor that raised would only show an error.
            return dg.SensorResult(skip_reason=f"{reader.describe()} unavailable: {exc}")
        if not fresh:
            return dg.SensorResult(skip_reason=f"nothing new in {reader.describe()}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(tags={"aios/connector": spec.name})],
        )

    return _sensor
