"""The real-time handler on a whole-flow run's lake, warehouse and Triton, fed by a real broker.

The run's data folder is copied, so the handler's writes never reach what other modules check.
Mail is the run's own messages under new Message-IDs: real senders with CRM records and
transaction history, never decided before.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.kafka_source import KafkaEventSource
from aios_dagster.lib.realtime.online_features import Windows, email_features, refresh_customers
from aios_dagster.lib.realtime.online_store import open_store
from aios_dagster.lib.realtime.reconcile import reconcile
from aios_dagster.lib.realtime.runtime import HandlerRuntime
from aios_dagster.lib.realtime.service import build_context
from aios_dagster.lib.warehouse import WarehouseResource
from aios_dagster.settings import Settings
from tests.integration.pipeline import PipelineRun
from tests.integration.realtime_support import (
    copy_of,
    current_decisions,
    kafka_handler,
    new_mail,
    quarantined,
)
from tests.kafka_broker import Broker, start_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def live(drift_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = copy_of(
        drift_run, tmp_path_factory.mktemp("realtime") / "data", drift_run.server.grpc_url
    )
    warehouse = WarehouseResource(
        duckdb_path=str(settings.warehouse_path), data_dir=str(settings.data_dir)
    )
    store = open_store(settings.online_store)
    refresh_customers(warehouse, store, Windows.from_dbt_project(settings.dbt_project_dir))
    store.close()
    return settings


def _landed_emails(settings: Settings, limit: int) -> pa.Table:
    glob = str(settings.lake_dir / "raw_emails" / "**" / "*.parquet")
    with duckdb.connect() as conn:
        return conn.sql(
            f"select * from (select distinct on (email_id) * from read_parquet('{glob}', "
            "union_by_name = true) order by email_id, _ingested_at desc, _batch_id desc) "
            f"order by email_id limit {limit}"
        ).to_arrow_table()


def test_online_features_are_the_feature_tables_values(live: Settings) -> None:
    """For the same emails, what the handler computes equals what dbt built, value by value."""
    spec = load_catalog(live.models_dir)["email_router"]
    landed = _landed_emails(live, 400)
    store = open_store(live.online_store)
    online = email_features(spec, landed, store, Windows.from_dbt_project(live.dbt_project_dir))
    store.close()
    warehouse = WarehouseResource(duckdb_path=str(live.warehouse_path), data_dir=str(live.data_dir))
    ids = landed.column("email_id").to_pylist()
    batch = warehouse.query_arrow(
        "select * from email_features where email_id in (select unnest(?)) order by email_id", [ids]
    )
    assert batch.num_rows >= 300, "too few landed emails have features to compare"
    by_id = {r: i for i, r in enumerate(online.column("email_id").to_pylist())}
    rows = np.array([by_id[r] for r in batch.column("email_id").to_pylist()])
    nonzero = 0
    for name in spec.numeric_features:
        want = batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        got = online.column(name).to_numpy(zero_copy_only=False)[rows]
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9), (
            name,
            [
                (i, g, w)
                for i, g, w in zip(batch.column("email_id").to_pylist(), got, want, strict=True)
                if abs(g - w) > 1e-9
            ][:5],
        )
        nonzero += int((want != 0).any())
    assert nonzero >= len(spec.numeric_features) - 2  # the comparison saw real values
    from aios_dagster.lib.features.text import arrow_to_vectors

    assert np.allclose(
        arrow_to_vectors(online.column("text_vec"))[rows],
        arrow_to_vectors(batch.column("text_vec")),
        atol=1e-6,
    )


def test_kafka_mail_is_decided_once_and_poison_is_quarantined(
    live: Settings, broker: Broker
) -> None:
    topic = "mail-e2e"
    broker.create_topic(topic, partitions=2)
    mail = new_mail(live, 40, "rt")
    poison = [b'{"not": "an email"}', b"\x00\xff\xfe binary junk"]
    broker.produce(topic, [*list(mail.values())[:20], *poison, *list(mail.values())[20:]])

    spec = kafka_handler(broker.bootstrap, topic, batch={"max_events": 16, "linger_ms": 20})
    store = open_store(live.online_store)
    ctx = build_context(spec, live, store=store, triton_retry_s=5.0)
    source = KafkaEventSource(spec.source_config())  # type: ignore[arg-type]
    runtime = HandlerRuntime(spec, ctx, source)
    stats = runtime.run(max_events=42, idle_exit_s=20)
    lag = source.lag()
    source.close()
    store.close()

    assert stats.events == 42 and stats.decided == 40 and stats.quarantined == 2, stats.snapshot()
    assert lag == 0
    decisions = current_decisions(live)
    mine = decisions.filter(pa.compute.is_in(decisions.column("record_id"), pa.array(list(mail))))
    assert sorted(mine.column("record_id").to_pylist()) == sorted(mail)  # each exactly once
    assert set(mine.column("run_id").to_pylist()) == {"realtime:test_kafka_handler"}
    assert all(h and len(h) == 32 for h in mine.column("input_hash").to_pylist())
    assert set(mine.column("model_version").to_pylist()) != {None}
    bad = quarantined(live).to_pylist()
    rules = {r["rule"] for r in bad if "mail-e2e" in (r.get("offset") or "")}
    assert any("sender_token" in rule or "parse_error" in rule for rule in rules), rules
    result = reconcile(
        LakeResource(root=str(live.lake_dir)),
        landed_dataset="raw_emails",
        predictions_dataset="email_router_predictions",
        window_days=60,
        grace_minutes=0,
    )
    assert result.twice == 0, result
    assert not set(result.missing_sample) & set(mail), result
