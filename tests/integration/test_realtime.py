"""The real-time handler on a whole-flow run's lake, warehouse and Triton, fed by a real broker.

The run's data folder is copied, so the handler's writes never reach what other modules check.
Mail is the run's own messages under new Message-IDs: real senders with CRM records and
transaction history, never decided before.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.lib.realtime.kafka_source import KafkaEventSource
from aios_dagster.lib.realtime.online_features import Windows, email_features, refresh_customers
from aios_dagster.lib.realtime.online_store import KeyValueStore, open_store
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
from tests.kafka_broker import Broker


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


def _kafka_runtime(
    spec: HandlerSpec,
    settings: Settings,
    store: KeyValueStore,
    *,
    triton_retry_s: float = 5.0,
    **kw: Any,
) -> HandlerRuntime:
    """The handler ``serve`` would build for ``spec``, on its own Kafka consumer."""
    ctx = build_context(spec, settings, store=store, triton_retry_s=triton_retry_s)
    return HandlerRuntime(spec, ctx, KafkaEventSource(spec.source_config()), **kw)  # type: ignore[arg-type]


def _in_background(runtime: HandlerRuntime, **run: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """``runtime.run(**run)`` in a started thread; its stats land in the dict as ``stats``."""
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(stats=runtime.run(**run)))
    worker.start()
    return worker, result


def test_online_features_are_the_feature_tables_values(
    clean_run: PipelineRun, tmp_path: Path
) -> None:
    """For the same emails, what the handler computes equals what dbt built, value by value,
    on either warehouse (the refresh reads DuckDB embedded, Postgres in production)."""
    from aios_dagster.resources import build_resources

    settings = clean_run.settings
    spec = load_catalog(settings.models_dir)["email_router"]
    windows = Windows.from_dbt_project(settings.dbt_project_dir)
    warehouse = build_resources(settings)["warehouse"]
    store = open_store(f"sqlite:///{tmp_path / 'online.sqlite'}")
    figures = refresh_customers(warehouse, store, windows)
    assert figures["customers"] >= 250 and figures["transactions"] > 1000, figures
    landed = _landed_emails(settings, 400)
    online = email_features(spec, landed, store, windows)
    store.close()
    ids = landed.column("email_id").to_pylist()
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)  # portable to both
    batch = warehouse.query_arrow(
        f"select * from email_features where email_id in ({quoted}) order by email_id"
    )
    assert batch.num_rows >= 300, "too few landed emails have features to compare"
    by_id = {r: i for i, r in enumerate(online.column("email_id").to_pylist())}
    rows = np.array([by_id[r] for r in batch.column("email_id").to_pylist()])
    nonzero = 0
    for name in spec.numeric_features:
        want = batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        got = online.column(name).to_numpy(zero_copy_only=False)[rows]
        wrong = [
            (i, g, w)
            for i, g, w in zip(batch.column("email_id").to_pylist(), got, want, strict=True)
            if abs(g - w) > 1e-9
        ]
        assert not wrong, (name, wrong[:5])
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
    runtime = _kafka_runtime(spec, live, store)
    stats = runtime.run(max_events=42, idle_exit_s=20)
    lag = runtime.source.lag()
    runtime.source.close()
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


class _CrashOnCommit:
    """The source, but the process 'dies' right after the decisions are durable."""

    def __init__(self, inner: KafkaEventSource) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def commit(self, events: object) -> None:
        raise SystemExit("killed between persist and commit")


def test_a_crash_between_persist_and_commit_keeps_the_decision_made(
    live: Settings, broker: Broker
) -> None:
    topic = "mail-replay"
    broker.create_topic(topic)
    mail = new_mail(live, 12, "replay")
    broker.produce(topic, list(mail.values()))
    spec = kafka_handler(broker.bootstrap, topic, batch={"max_events": 50, "linger_ms": 200})
    store = open_store(live.online_store)
    ctx = build_context(spec, live, store=store, triton_retry_s=5.0)

    first = KafkaEventSource(spec.source_config())  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        HandlerRuntime(spec, ctx, _CrashOnCommit(first)).run(max_events=12, idle_exit_s=20)  # type: ignore[arg-type]
    first.close()
    decided_first = current_decisions(live)
    scored_at = {
        r["record_id"]: r["scored_at"] for r in decided_first.to_pylist() if r["record_id"] in mail
    }
    assert sorted(scored_at) == sorted(mail)

    again = KafkaEventSource(spec.source_config())  # type: ignore[arg-type]
    stats = HandlerRuntime(spec, ctx, again).run(max_events=12, idle_exit_s=20)
    assert again.lag() == 0
    again.close()
    store.close()
    assert stats.events == 12 and stats.already_decided == 12 and stats.decided == 0
    after = [r for r in current_decisions(live).to_pylist() if r["record_id"] in mail]
    assert sorted(r["record_id"] for r in after) == sorted(mail)
    assert {r["record_id"]: r["scored_at"] for r in after} == scored_at  # the first decision stands


def test_serve_killed_mid_stream_and_restarted_loses_and_repeats_nothing(
    live: Settings, broker: Broker, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    topic = "mail-crash"
    broker.create_topic(topic)
    mail = new_mail(live, 80, "crash")
    env = {
        **os.environ,
        "AIOS_DATA_DIR": str(live.data_dir),
        "AIOS_TRITON_GRPC_URL": live.triton_grpc_url,
        "AIOS_KAFKA_BOOTSTRAP": broker.bootstrap,
        "AIOS_KAFKA_MAIL_TOPIC": topic,
    }
    cli = str(Path(sys.executable).with_name("aios-dagster"))
    serve = [cli, "serve", "email_triage_kafka", "--no-dagster"]

    def produce() -> None:
        for value in mail.values():
            broker.produce(topic, [value])
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    log = (tmp_path / "serve.log").open("wb")
    first = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT)
    producer.start()
    deadline = time.monotonic() + 90
    decided = 0
    while time.monotonic() < deadline and first.poll() is None:
        table = current_decisions(live)
        decided = len(set(table.column("record_id").to_pylist()) & set(mail))
        if decided >= 15:
            break
        time.sleep(0.2)
    assert first.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
    assert decided >= 15, (tmp_path / "serve.log").read_text()[-3000:]
    first.send_signal(signal.SIGKILL)  # no chance to finish its pass or commit
    first.wait(10)
    producer.join(30)

    second = subprocess.run(
        [*serve, "--idle-exit-s", "8"], env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    after = [r for r in current_decisions(live).to_pylist() if r["record_id"] in mail]
    assert sorted(r["record_id"] for r in after) == sorted(mail)  # none lost, none twice
    import json

    report = json.loads(second.stdout.strip().splitlines()[-1])
    assert report["events"] + decided >= len(mail) and report["lag"] in (0, None)


def test_triton_killed_pauses_consumption_and_it_resumes_without_loss(
    live: Settings, broker: Broker, tmp_path: Path
) -> None:
    import time
    from dataclasses import replace

    from aios_dagster.lib.serving.launcher import LocalTritonServer
    from tests.triton_fixtures import start_or_fail

    server = start_or_fail(LocalTritonServer(live.model_repository, tmp_path / "triton"))
    try:
        settings = replace(live, triton_grpc_url=server.grpc_url)
        topic = "mail-triton-down"
        broker.create_topic(topic)
        mail = list(new_mail(settings, 60, "down").items())
        spec = kafka_handler(broker.bootstrap, topic, batch={"max_events": 5, "linger_ms": 20})
        store = open_store(settings.online_store)
        runtime = _kafka_runtime(spec, settings, store, triton_retry_s=1.0, triton_wait_s=0.5)
        worker, result = _in_background(runtime, max_events=60, idle_exit_s=30)
        broker.produce(topic, [v for _, v in mail[:20]])
        deadline = time.monotonic() + 60
        while runtime.stats.decided < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.stats.decided >= 10
        server.kill()  # mid-stream, like an OOM kill
        broker.produce(topic, [v for _, v in mail[20:]])
        time.sleep(1.5)
        held = runtime.stats.events
        time.sleep(2.5)
        # It stopped consuming: nothing more was taken on while Triton was away.
        assert runtime.stats.triton_waits >= 1 and runtime.stats.events == held < 60
        server.start()  # same ports, as a pod restarting behind its Service
        worker.join(120)
        assert not worker.is_alive()
        runtime.source.close()
        store.close()
    finally:
        server.stop()
    stats = result["stats"]
    assert stats.events == 60 and stats.paused_s >= 3 and stats.max_lag > 0, stats.snapshot()
    after = [r for r in current_decisions(live).to_pylist() if r["record_id"].startswith("down-")]
    assert sorted(r["record_id"] for r in after) == sorted(k for k, _ in mail)


def test_a_third_email_in_a_day_is_raised_and_a_reply_joins_its_ticket(
    live: Settings, broker: Broker
) -> None:
    import re

    from aios_dagster.lib.realtime.state import RepeatSenderConfig, raised_label

    topic = "mail-state"
    broker.create_topic(topic)
    plain = next(
        p.read_bytes()
        for p in sorted(live.mailbox_dir.glob("*.eml"))
        if b"In-Reply-To" not in p.read_bytes() and b"References" not in p.read_bytes()
    )
    ids = ["state-one", "state-two", "state-three"]

    def message(email_id: str, reply_to: str | None) -> bytes:
        header = f"Message-ID: <{email_id}@mail.test>".encode()
        if reply_to:
            header += f"\r\nIn-Reply-To: <{reply_to}@mail.test>".encode()
        return re.sub(rb"(?im)^Message-ID:.*$", header, plain, count=1)

    broker.produce(topic, [message(ids[0], None), message(ids[1], ids[0]), message(ids[2], None)])
    config = {"head": "priority", "levels": ["P3", "P2", "P1"], "emails": 3, "within_hours": 24}
    spec = kafka_handler(
        broker.bootstrap,
        topic,
        steps=["parse", "land", "features", "score", "remember", "persist"],
        repeat_sender=config,
        batch={"max_events": 1, "linger_ms": 0},  # one email per pass: state carries over
    )
    store = open_store(live.online_store)
    runtime = _kafka_runtime(spec, live, store)
    stats = runtime.run(max_events=3, idle_exit_s=20)
    runtime.source.close()
    store.close()
    assert stats.decided == 3

    glob = str(live.lake_dir / "email_router_tickets" / "**" / "*.parquet")
    with duckdb.connect() as conn:
        tickets = {
            r[0]: r
            for r in conn.execute(
                "select email_id, ticket_id, sender_emails_in_window, escalated_from "
                f"from read_parquet('{glob}')"
            ).fetchall()
        }
    assert tickets[ids[1]][1] == ids[0]  # the reply joined the first email's ticket
    assert tickets[ids[2]][1] == ids[2]
    assert [tickets[i][2] for i in ids] == [1, 2, 3]
    decision = next(r for r in current_decisions(live).to_pylist() if r["record_id"] == ids[2])
    before = tickets[ids[2]][3]
    if before is None:  # the model already said the highest level: nothing to raise
        assert decision["priority"] == "P1" and decision["policy"] == "route-or-review-v1"
    else:
        levels = RepeatSenderConfig(**config)
        assert decision["priority"] == raised_label(levels, before)
        assert decision["policy"] == "route-or-review-v1+repeat_sender"
    assert all(tickets[i][3] is None for i in ids[:2])


def _keys(broker: Broker, topic: str) -> list[str]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"read-{topic}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    keys: list[str] = []
    for message in consumer.consume(num_messages=10_000, timeout=3):
        if message.error() is None:
            keys.append(message.key().decode())
    consumer.close()
    return keys


def test_decisions_reach_the_topics_and_the_rpa_queue_once_across_a_crash(
    live: Settings, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aios_dagster.lib.realtime import steps
    from aios_dagster.lib.serving.triton import labels_from_config
    from tests.realtime.uipath_api import Orchestrator

    topic = "mail-sinks"
    for name in (topic, "routed", "review"):
        broker.create_topic(name)
    mail = new_mail(live, 24, "sink")
    broker.produce(topic, list(mail.values()))
    probe = build_context(
        kafka_handler(broker.bootstrap, topic), live, store=open_store(live.online_store),
        triton_retry_s=5.0,
    )  # fmt: skip
    queues = labels_from_config(probe.triton.get_model_config("email_router"))["queue"]
    probe.store.close()
    back_office = {label: f"Q-{label}" for label in queues if label != "complaints"}
    orchestrator = Orchestrator("tok", 3, list(back_office.values())).start()
    sinks = {
        "topics": {"bootstrap_servers": broker.bootstrap, "routed": "routed", "review": "review"},
        "rpa": {"url": orchestrator.url, "folder_id": 3, "token": "tok", "queues": back_office},
    }
    spec = kafka_handler(
        broker.bootstrap,
        topic,
        steps=["parse", "land", "features", "score", "sink", "persist"],
        sinks=sinks,
    )
    store = open_store(live.online_store)
    try:
        # First life: the sinks are fed, then the process dies before the decisions persist.
        def die(ctx: object, work: object) -> None:
            raise SystemExit("killed between sink and persist")

        monkeypatch.setitem(steps.STEPS, "persist", die)
        first = _kafka_runtime(spec, live, store)
        with pytest.raises(SystemExit):
            first.run(max_events=24, idle_exit_s=20)
        first.source.close()
        first_items = {i["Reference"] for q in orchestrator.items.values() for i in q}
        monkeypatch.undo()

        again = _kafka_runtime(spec, live, store)
        stats = again.run(max_events=24, idle_exit_s=20)
        again.source.close()
        ctx = again.ctx
        assert ctx.sinks is not None and ctx.sinks.rpa is not None
        assert ctx.sinks.rpa.already_there == len(first_items) and ctx.sinks.rpa.added == 0
        ctx.sinks.close()
    finally:
        orchestrator.stop()
        store.close()
    assert stats.decided == 24
    mine = [r for r in current_decisions(live).to_pylist() if r["record_id"] in mail]
    items = [i["Reference"] for q in orchestrator.items.values() for i in q]
    wanted = {
        r["record_id"] for r in mine if not r["needs_review"] and r["decision"] in back_office
    }
    assert sorted(items) == sorted(wanted) and wanted  # each back-office email exactly once
    review = {r["record_id"] for r in mine if r["needs_review"]}
    assert set(_keys(broker, "review")) == review
    assert set(_keys(broker, "routed")) == set(mail) - review  # at least once per key


def test_a_broker_restart_mid_stream_loses_and_repeats_nothing(
    live: Settings, tmp_path: Path
) -> None:
    import time

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.kafka_broker import start_broker
    from tests.net import free_port

    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    s3.start()
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    ).create_bucket(Bucket="broker")  # fmt: skip
    env = {**keys, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": endpoint,
           "AWS_ALLOW_HTTP": "true"}  # fmt: skip
    broker = start_broker(tmp_path, storage="s3://broker/", env=env)  # survives a restart
    try:
        topic = "mail-restart"
        broker.create_topic(topic)
        mail = list(new_mail(live, 30, "restart").values())
        spec = kafka_handler(broker.bootstrap, topic, batch={"max_events": 4, "linger_ms": 20})
        store = open_store(live.online_store)
        runtime = _kafka_runtime(spec, live, store)
        worker, result = _in_background(runtime, max_events=30, idle_exit_s=40)
        broker.produce(topic, mail[:15])
        deadline = time.monotonic() + 60
        while runtime.stats.decided < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.stop()
        time.sleep(3)
        broker.start()
        broker.produce(topic, mail[15:])
        worker.join(120)
        assert not worker.is_alive()
        lag = runtime.source.lag()
        runtime.source.close()
        store.close()
    finally:
        broker.stop()
        s3.stop()
    stats = result["stats"]
    assert stats.events == 30 and lag == 0, stats.snapshot()
    ids = [r["record_id"] for r in current_decisions(live).to_pylist()]
    mine = [i for i in ids if i.startswith("restart-")]
    assert len(mine) == len(set(mine)) == 30  # none lost, none twice
