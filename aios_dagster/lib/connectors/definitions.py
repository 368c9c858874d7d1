"""Turn each declared connector (``connectors/*.yaml``) into Dagster definitions.

One YAML file becomes: an asset (kind tags, owners, group) that lands new source records under
the connector's contract, a blocking contract check on it, and a sensor or schedule when the file
declares a trigger. Nothing here knows a particular source; adding one is a YAML file and a
contract in ``expectations/``.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from aios_dagster.lib.connectors.cursors import ConnectorBusyError, CursorStore
from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.runtime import build_reader, run_connector
from aios_dagster.lib.connectors.source import PermanentSourceError, TransientSourceError
from aios_dagster.lib.connectors.spec import ConnectorSpec, load_specs
from aios_dagster.lib.contracts.landing import count_records, read_quarantine
from aios_dagster.lib.contracts.runner import validate_frame
from aios_dagster.lib.contracts.store import ContractStore
from aios_dagster.lib.lake import LakeResource
from aios_dagster.settings import Settings

CONNECTORS_DIR = Path(__file__).resolve().parents[2] / "defs" / "ingest" / "connectors"
TRANSIENT_RETRIES = 2
TRANSIENT_RETRY_WAIT_S = 15


def connector_specs(
    paths: dict[str, str], directory: Path = CONNECTORS_DIR, environ: dict[str, str] | None = None
) -> list[ConnectorSpec]:
    return load_specs(directory, paths, environ)


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
        description=f"{spec.description}\n\nDeclared in `{Path(spec.path or '').name}` "
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
            # Batches landed before the failure keep their cursor: a retry resumes after them.
            context.log.warning(f"{spec.name}: transient source error, run will retry: {exc}")
            raise dg.RetryRequested(
                max_retries=TRANSIENT_RETRIES, seconds_to_wait=TRANSIENT_RETRY_WAIT_S
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


def build_connector_sensor(spec: ConnectorSpec, job: Any) -> dg.SensorDefinition:
    """Poll the source's ``has_new`` and launch ``job``, never while one of its runs is active."""
    trigger = spec.trigger.sensor
    assert trigger is not None

    @dg.sensor(
        name=f"{spec.name}_sensor",
        job=job,
        minimum_interval_seconds=trigger.minimum_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING
        if trigger.default_running
        else dg.DefaultSensorStatus.STOPPED,
        description=f"Runs {job.name} when {spec.name}'s source has records after its cursor.",
    )
    def _sensor(context: dg.SensorEvaluationContext, cursors: CursorStore) -> dg.SensorResult:
        active = context.instance.get_runs(
            filters=dg.RunsFilter(
                job_name=job.name,
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
            return dg.SensorResult(skip_reason=f"{job.name} run {active[0].run_id} in progress")
        reader = build_reader(spec)
        if not reader.has_new(cursors.load(spec.name)):
            return dg.SensorResult(skip_reason=f"nothing new in {reader.describe()}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(tags={"aios/connector": spec.name})],
        )

    return _sensor


@dataclass
class ConnectorDefs:
    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    checks: list[dg.AssetChecksDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)


def settings_paths(settings: Settings) -> dict[str, str]:
    """The ``{placeholders}`` a connector file may use for paths."""
    return {
        "data_dir": str(settings.data_dir),
        "sources_dir": str(settings.sources_dir),
        "lake_dir": str(settings.lake_dir),
        "project_dir": str(settings.project_dir),
    }


def connector_defs(
    settings: Settings,
    jobs: dict[str, Any],
    directory: Path = CONNECTORS_DIR,
    environ: dict[str, str] | None = None,
) -> ConnectorDefs:
    """Asset, check and trigger of every enabled connector declared in ``directory``.

    A trigger runs the job the file names (e.g. ``mail_refresh_job``) or else a job of its own,
    ``ingest_<name>_job``, that materialises just the connector and its contract check.
    """
    out = ConnectorDefs()
    for spec in connector_specs(settings_paths(settings), directory, environ):
        out.assets.append(build_connector_asset(spec))
        out.checks.append(build_contract_check(spec))
        if spec.trigger.sensor is None and spec.trigger.schedule is None:
            continue
        own = dg.define_asset_job(
            f"ingest_{spec.name}_job",
            selection=dg.AssetSelection.assets(spec.name),
            tags={"aios/connector": spec.name},
            description=f"Land new records of connector {spec.name}.",
        )
        if spec.trigger.sensor is not None:
            named = spec.trigger.sensor.job
            if named is not None and named not in jobs:
                raise ValueError(f"{spec.path}: trigger job {named!r} is not defined")
            job = jobs[named] if named else own
            out.sensors.append(build_connector_sensor(spec, job))
            if job is own:
                out.jobs.append(own)
        if spec.trigger.schedule is not None:
            out.schedules.append(
                dg.ScheduleDefinition(
                    name=f"{spec.name}_schedule",
                    job=own,
                    cron_schedule=spec.trigger.schedule.cron,
                    default_status=dg.DefaultScheduleStatus.STOPPED,
                    description=f"Pull new records of {spec.name} on a schedule.",
                )
            )
            if own not in out.jobs:
                out.jobs.append(own)
    return out
