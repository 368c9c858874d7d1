"""What Dagster shows of a handler: its reports as runless materializations, and its checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa

from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.checks import (
    HANDLERS,
    handler_asset,
    handler_checks,
    handler_checks_job,
)
from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.lib.realtime.online_store import OnlineStoreResource, open_store
from aios_dagster.lib.realtime.runtime import RuntimeStats
from aios_dagster.lib.realtime.service import reporter

SPEC = HandlerSpec(
    name="live_test",
    model="email_router",
    connector="raw_emails",
    source={"kind": "folder", "path": "/nowhere"},
    checks={"max_lag": 10, "grace_minutes": 0},
)


def _checks(tmp: Path, instance: dg.DagsterInstance) -> dict[str, bool]:
    defs = dg.Definitions(
        assets=[handler_asset(SPEC, "raw_emails")],
        asset_checks=handler_checks(SPEC, "emails"),
        jobs=[handler_checks_job(SPEC)],
        resources={
            "lake": LakeResource(root=str(tmp / "lake")),
            "online_store": OnlineStoreResource(url=f"sqlite:///{tmp / 'online.sqlite'}"),
        },
    )
    job = defs.resolve_job_def("live_test_checks_job")
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_reports_are_materializations_and_the_checks_judge_them(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert _checks(tmp_path, instance)["live_test_lag"] is False  # never reported

    store = open_store(f"sqlite:///{tmp_path / 'online.sqlite'}")
    stats = RuntimeStats(events=12, decided=11, quarantined=1, last_lag=3)
    stats.latencies_s.extend([0.1, 0.2, 0.3])
    reporter(SPEC, store, instance)(stats)
    event = instance.get_latest_materialization_event(dg.AssetKey(SPEC.name))
    assert event is not None and event.run_id == ""  # runless: reported by the handler itself
    metadata = event.asset_materialization.metadata
    assert metadata["decided"].value == 11 and metadata["lag"].value == 3

    # Landed mail with one decision each: reconciled; the fresh report passes the lag check.
    lake = LakeResource(root=str(tmp_path / "lake"))
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    now = pa.array([hour_ago] * 2, pa.timestamp("us", tz="UTC"))
    lake.write("raw_emails", pa.table({"email_id": ["a", "b"], "received_at": now}), part="p1")
    lake.write(
        "email_router_predictions", pa.table({"record_id": ["a", "b"]}), part="date=2026-01-01__x"
    )
    assert _checks(tmp_path, instance) == {"live_test_lag": True, "live_test_reconciliation": True}

    lake.write(
        "email_router_predictions", pa.table({"record_id": ["b"]}), part="date=2026-01-01__y"
    )
    store.put_many(
        HANDLERS, {SPEC.name: {**store.get_many(HANDLERS, [SPEC.name])[SPEC.name], "lag": 50}}
    )
    assert _checks(tmp_path, instance) == {
        "live_test_lag": False,
        "live_test_reconciliation": False,
    }
    store.close()
