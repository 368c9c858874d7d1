"""The production runtime, live: the daemon launches what sensors and schedules ask for, the run
queue keeps its tag limits, and an operator drives runs and a backfill through GraphQL.

Over the package's drifted run (after ``test_triage_e2e`` has read it, before the loop tests):
``dagster-daemon`` and ``dagster-webserver`` run for real against a Postgres instance configured
from ``deploy/dagster.yaml``, with the data folder and Triton of that run. Mail dropped into the
mailbox must come back as predictions without anyone calling a job; the transactions schedule
(set to every minute through ``AIOS_TRANSACTIONS_CRON``) must tick; ``aios-dagster remote``
launches one day's scoring and a two-day backfill; and no two runs that write predictions may
ever have run at the same time.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from aios_dagster.cli import main as cli_main
from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import deliver_new_emails
from aios_dagster.lib.operator_api import FINISHED_RUN, OperatorClient, RunInfo
from aios_dagster.lib.orchestration import PREDICTIONS_WRITER_TAG
from aios_dagster.settings import Settings
from tests.integration.live_deployment import Deployment, deployment
from tests.integration.pipeline import PipelineRun

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "live"
RUN_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def live(drift_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {
        "AIOS_DATA_DIR": str(drift_run.settings.data_dir),
        "AIOS_TRITON_GRPC_URL": drift_run.server.grpc_url,
        "AIOS_TRITON_METRICS_URL": drift_run.server.metrics_url,
        "AIOS_TRANSACTIONS_CRON": "* * * * *",
    }
    with deployment(tmp_path_factory.mktemp("live"), env, ARTIFACTS) as deployed:
        yield deployed


def _remote(live: Deployment, *args: str) -> dict:
    """``aios-dagster remote ...`` as an operator types it; its JSON answer."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli_main(["remote", "--url", live.url, *args])
    return json.loads(out.getvalue())


def _wait_until(what: str, check, timeout_s: float = RUN_TIMEOUT_S, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    pytest.fail(f"{what} within {timeout_s:.0f} s; daemon log tail:\n{_daemon_log()}")


def _daemon_log() -> str:
    path = ARTIFACTS / "daemon.log"
    return path.read_text()[-4000:] if path.exists() else "(no log)"


@contextlib.contextmanager
def _instance(live: Deployment) -> Iterator[dg.DagsterInstance]:
    """The deployment's Postgres instance, opened in this process as the daemon opens it."""
    with pytest.MonkeyPatch.context() as env:
        for key in ("AIOS_PG_HOST", "AIOS_PG_USER", "AIOS_PG_PASSWORD", "AIOS_PG_DAGSTER_DB"):
            env.setenv(key, live.env[key])
        with dg.DagsterInstance.from_config(str(live.home)) as instance:
            yield instance


def live_settings(live: Deployment) -> Settings:
    return Settings.from_env({k: v for k, v in live.env.items() if k.startswith("AIOS_")})


def _finished(runs: list[RunInfo]) -> list[RunInfo]:
    return [run for run in runs if run.status in FINISHED_RUN]


def test_the_daemon_serves_sensor_schedule_and_operator(
    live: Deployment, drift_run: PipelineRun
) -> None:
    client = OperatorClient(live.url)
    settings = drift_run.settings
    days = [(drift_run.generated.current_start + timedelta(days=i)).isoformat() for i in range(3)]

    # Mail has arrived; an operator turns the new-mail sensor and the transactions schedule on,
    # and at the same moment asks for a day's scoring and a backfill of two more, so three runs
    # that write predictions compete for the one slot the run queue allows.
    new = deliver_new_emails(settings.sources_dir, count=25, seed=42, day=datetime.now(UTC).date())
    new_ids = {path.stem for path in new}
    assert _remote(live, "start-sensor", "raw_emails_sensor")["status"] == "RUNNING"
    assert _remote(live, "start-schedule", "raw_transactions_schedule")["status"] == "RUNNING"
    launched = _remote(live, "launch", "scoring_job", "--partition", days[0])
    backfill = _remote(live, "backfill", "scoring_job", "--partitions", ",".join(days[1:]))
    assert backfill["partitions"] == days[1:]

    saw_queue_hold = False

    def everything_done() -> bool:
        nonlocal saw_queue_hold
        writers = client.runs(tags={PREDICTIONS_WRITER_TAG: "true"})
        active = {run.status for run in writers}
        if "QUEUED" in active and "STARTED" in active:
            saw_queue_hold = True  # one writes while another waits in the queue
        micro = _finished(client.runs(job="microbatch_job"))
        scheduled = _finished(client.runs(job="ingest_raw_transactions_job"))
        info = client.backfill_status(backfill["backfill_id"])
        return bool(
            micro
            and scheduled
            and info.finished
            and client.run_status(launched["run_id"]) in FINISHED_RUN
        )

    _wait_until(
        "the sensor's, the schedule's, the operator's and the backfill's runs", everything_done
    )

    # The operator's run, read back as the operator would.
    status = _remote(live, "status", launched["run_id"])
    assert status["status"] == "SUCCESS", _daemon_log()

    # The backfill: the prediction assets backfill a range in one run (their backfill policy),
    # so one successful run carries the range of days as its tags.
    info = _remote(live, "status", "--backfill", backfill["backfill_id"])
    assert info["status"] == "COMPLETED_SUCCESS", info
    [range_run] = info["runs"]
    assert range_run["status"] == "SUCCESS"
    assert range_run["tags"]["dagster/asset_partition_range_start"] == days[1]
    assert range_run["tags"]["dagster/asset_partition_range_end"] == days[2]

    # The new-mail sensor launched exactly one micro-batch run, and it scored the new mail.
    [micro] = client.runs(job="microbatch_job")
    assert micro.status == "SUCCESS"
    assert micro.tags.get("dagster/sensor_name") == "raw_emails_sensor"
    landed = set(pq.read_table(settings.lake_dir / "raw_emails").column("email_id").to_pylist())
    landed_new = new_ids & landed  # a delivered email the contract quarantines is not scored
    assert len(landed_new) >= 20
    predictions = pq.read_table(settings.lake_dir / "email_router_predictions").to_pandas()
    assert predictions["record_id"].is_unique
    assert landed_new <= set(predictions["record_id"])

    # Run again (as a retry after a failure later in the run would), on the same Postgres
    # instance, the micro-batch job finds nothing unscored: no second prediction or decision.
    with _instance(live) as instance:
        again = build_definitions(live_settings(live)).resolve_job_def("microbatch_job")
        assert again.execute_in_process(instance=instance).success
    after = pq.read_table(settings.lake_dir / "email_router_predictions").to_pandas()
    assert len(after) == len(predictions) and after["record_id"].is_unique
    log = pq.read_table(settings.lake_dir / "decision_log").to_pandas()
    assert (log[log["record_id"].isin(landed_new)].groupby("record_id").size() == 1).all()

    # The schedule ticked and its run landed the ledger (nothing new to land, and no failure).
    scheduled = client.runs(job="ingest_raw_transactions_job")
    assert scheduled[-1].status == "SUCCESS"
    assert scheduled[-1].tags.get("dagster/schedule_name") == "raw_transactions_schedule"

    # The tag limit: at most one predictions writer at any time, and the queue did hold one.
    writers = sorted(client.runs(tags={PREDICTIONS_WRITER_TAG: "true"}), key=lambda r: r.start)
    # The sensor's micro-batch run, the operator's day, the backfill's range, the re-run.
    assert len(writers) == 4
    for earlier, later in itertools.pairwise(writers):
        assert earlier.end is not None and later.start is not None
        assert later.start >= earlier.end, f"{earlier.run_id} and {later.run_id} overlapped"
    assert saw_queue_hold
    timeline = [(r.job, r.run_id, r.status, r.start, r.end) for r in client.runs()]
    (ARTIFACTS / "runs.json").write_text(json.dumps(timeline, indent=1))

    # The instance in Postgres holds each day's materialisation from its own run.
    with _instance(live) as instance:
        for day in days:
            events = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("email_router_predictions"), asset_partitions=[day]
                ),
                limit=1,
            ).records
            assert events, f"no materialisation of {day} in the Postgres instance"
        micro_events = instance.fetch_materializations(
            dg.AssetKey("email_router_microbatch"), limit=2
        ).records
        rows = [e.asset_materialization.metadata["dagster/row_count"].value for e in micro_events]
        assert rows == [0, len(landed_new)]  # newest first: the second run scored nothing
