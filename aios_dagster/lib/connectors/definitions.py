"""The Dagster objects one declared connector becomes (built by ``ConnectorComponent``).

An asset (kind tags, owners, group) that lands new source records under the connector's
contract, a blocking contract check on it, and a sensor polling the source. Nothing here knows a
particular source.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from aios_dagster.lib.connectors.cursors import ConnectorBusyError, CursorStore
from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.runtime import build_reader, run_connector
from aios_dagster.lib.connectors.source import PermanentSourceError, TransientSourceError
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.landing import count_records, read_quarantine
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
        return dg.MaterializeResult(metadata=report.metadata(contract))

    return _connector


def build_contract_check(spec: ConnectorSpec) -> dg.AssetChecksDefinition:
    dataset = spec.dataset

    @dg.asset_check(
        asset=dg.AssetKey(spec.name),
        name=f"{dataset}_contract",
        blocking=True,
        description=f"Great Expectations contract expectations/{dataset}.json on the landed rows "
        "(newest copy of each record), and quarantine within the contract's tolerance.",
    )
    def _check(lake: LakeResource, contracts: ContractStore) -> dg.AssetCheckResult:
        contract = contracts.load(dataset)
        # Nothing landed yet (a new optional source, or every record quarantined): the
        # contract still runs, on zero rows, and the quarantine rate decides.
        raw = lake.read(f"raw_{dataset}").to_pandas() if lake.parts(f"raw_{dataset}") else None
        landed = (
            latest_records(raw, contract.record_id)
            if raw is not None
            else pd.DataFrame(columns=list(spec.schema_))
        )
        quarantined = read_quarantine(lake, dataset)
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
        if not reader.has_new(cursors.load(spec.name)):
            return dg.SensorResult(skip_reason=f"nothing new in {reader.describe()}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(tags={"aios/connector": spec.name})],
        )

    return _sensor
