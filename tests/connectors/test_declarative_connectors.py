"""Connectors declared in YAML run as Dagster assets against the real systems they name.

The two optional reference connectors (helpdesk REST API, card events on NATS JetStream) are
switched on by their environment variables, loaded by the same factory as the embedded ones,
and materialised through Dagster: rows land, PII is tokenised, bad records are quarantined with
their reason, the contract check runs, and a second run takes only what is new.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import dagster as dg
import nats
import nats.js.errors
import pyarrow.parquet as pq
import pytest

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.lake import LakeResource
from aios_dagster.settings import Settings
from tests.connectors.http_api import TicketApi
from tests.postgres import scratch

NATS_URL = "nats://127.0.0.1:4222"
CARD_SUBJECT = "bank.cards.events"


def _defs(tmp_path: Path) -> tuple[dg.Definitions, Settings]:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    return build_definitions(settings), settings


def _run_job(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False)


def _check_passed(result: dg.ExecuteInProcessResult) -> bool:
    evaluations = result.get_asset_check_evaluations()
    assert evaluations, "the contract check did not run"
    return all(e.passed for e in evaluations)


def _landed(settings: Settings, dataset: str, record_id: str):
    lake = LakeResource(root=str(settings.lake_dir))
    return latest_records(lake.read(f"raw_{dataset}").to_pandas(), record_id)


def test_helpdesk_api_connector_lands_incrementally(
    tmp_path: Path, http_api: TicketApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOS_HELPDESK_URL", http_api.url)
    monkeypatch.setenv("AIOS_HELPDESK_TOKEN", "s3cret-token")
    defs, settings = _defs(tmp_path)
    asset = defs.resolve_assets_def("raw_helpdesk_tickets")
    assert asset.specs_by_key[dg.AssetKey("raw_helpdesk_tickets")].kinds >= {"http", "parquet"}
    assert "s3cret-token" not in (asset.descriptions_by_key[asset.key] or "")

    with dg.instance_for_test() as instance:
        first = _run_job(defs, "ingest_raw_helpdesk_tickets_job", instance)
        assert first.success and _check_passed(first)
        meta = first.asset_materializations_for_node("raw_helpdesk_tickets")[0].metadata
        assert meta["rows_landed"].value == 1000
        landed = _landed(settings, "helpdesk_tickets", "id")
        assert len(landed) == 1000 and landed["id"].is_unique
        assert landed["customer_token"].str.startswith("tok_").all()
        assert not landed["subject"].str.contains("@").any()
        assert all(
            r.headers.get("Authorization") == "Bearer s3cret-token" for r in http_api.requests
        )

        http_api.add_tickets(5)
        second = _run_job(defs, "ingest_raw_helpdesk_tickets_job", instance)
        assert second.success
        meta = second.asset_materializations_for_node("raw_helpdesk_tickets")[0].metadata
        # Incremental: the 5 new tickets plus the boundary ties re-read (inclusive since),
        # which dedup keeps single.
        assert 5 <= meta["rows_landed"].value <= 10
        assert len(_landed(settings, "helpdesk_tickets", "id")) == 1005


def _nats(fn) -> object:
    async def go():
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


@pytest.fixture
def card_stream() -> Iterator[str]:
    """A fresh stream bound to the card-event subjects (the producer's job in production)."""
    name = f"TEST_CARDS_{uuid.uuid4().hex[:10]}"

    async def create(js) -> None:
        with suppress(nats.js.errors.NotFoundError):
            stale = await js.find_stream_name_by_subject(f"{CARD_SUBJECT}.>")
            await js.delete_stream(stale)
        await js.add_stream(name=name, subjects=[f"{CARD_SUBJECT}.>"])

    try:
        _nats(create)
    except Exception as exc:  # no bus, no test: fail loudly, never skip
        pytest.fail(f"NATS JetStream at {NATS_URL} unavailable: {exc!r}", pytrace=False)

    async def delete(js) -> None:
        with suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)

    try:
        yield name
    finally:
        _nats(delete)


def _publish(events: list[bytes]) -> None:
    async def go(js) -> None:
        for i, data in enumerate(events):
            await js.publish(f"{CARD_SUBJECT}.{'auth' if i % 2 else 'block'}", data)

    _nats(go)


def _event(i: int, event_type: str = "authorised") -> bytes:
    return json.dumps(
        {
            "event_id": f"E{i:05d}",
            "customer_id": f"C-{i % 50:04d}",
            "card_number": f"4000 1234 5678 {i:04d}",
            "event_type": event_type,
            "occurred_at": f"2026-11-24T10:{i % 60:02d}:00Z",
            "amount": i * 1.5,
        }
    ).encode()


def test_card_events_connector_acks_after_landing(
    tmp_path: Path, card_stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOS_NATS_URL", NATS_URL)
    monkeypatch.setenv("AIOS_CARD_EVENTS_STREAM", card_stream)
    defs, settings = _defs(tmp_path)
    events = [_event(i) for i in range(1, 301)]
    events[10] = b"not json at all"
    events[20] = _event(21, event_type="teleported")
    _publish(events)

    with dg.instance_for_test() as instance:
        sensor = defs.resolve_sensor_def("raw_card_events_sensor")
        context = dg.build_sensor_context(instance=instance, resources=defs.resources)
        assert len(sensor(context).run_requests) == 1  # new messages on the stream

        result = _run_job(defs, "ingest_raw_card_events_job", instance)
        assert result.success and _check_passed(result)
        landed = _landed(settings, "card_events", "event_id")
        assert len(landed) == 298
        assert not landed["card_token"].str.contains("4000").any()
        lake = LakeResource(root=str(settings.lake_dir))
        quarantine = lake.read("quarantine_card_events").to_pandas()
        assert sorted(quarantine["rule"]) == [
            "column_values_to_be_in_set(event_type)",
            "not_json",
        ]
        parquet_text = "\n".join(
            str(v)
            for p in Path(settings.lake_dir).rglob("*.parquet")
            for v in pq.read_table(p).to_pylist()
        )
        assert "4000 1234 5678" not in parquet_text

        # Everything was acknowledged after landing: nothing pending, the sensor is quiet.
        assert not sensor(context).run_requests
        _publish([_event(i) for i in range(301, 311)])
        again = _run_job(defs, "ingest_raw_card_events_job", instance)
        meta = again.asset_materializations_for_node("raw_card_events")[0].metadata
        assert meta["rows_landed"].value == 10
        assert len(_landed(settings, "card_events", "event_id")) == 308


@pytest.fixture
def bank_schema() -> Iterator[str]:
    """A private schema in the real Postgres for one test's core-banking replica."""
    with scratch("schema", "bank") as schema:
        yield schema


def test_transactions_connector_reads_postgres_when_configured(
    tmp_path: Path, bank_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same YAML connector pulls from PostgreSQL once AIOS_BANK_DSN points at it."""
    import sqlite3

    import psycopg

    from aios_dagster.lib.generator import generate_reference_data

    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    gen = generate_reference_data(settings.sources_dir, emails_per_week=50, customers=60, weeks=1)
    with sqlite3.connect(settings.transactions_db) as lite:
        rows = lite.execute(
            "select txn_id, customer_id, account_number, booked_at, amount, currency, merchant,"
            " channel, is_disputed, updated_at from transactions"
        ).fetchall()
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"create table {bank_schema}.transactions (txn_id text primary key, customer_id text,"
            " account_number text, booked_at timestamptz, amount double precision,"
            " currency text, merchant text, channel text, is_disputed boolean,"
            " updated_at timestamptz)"
        )
        with conn.cursor().copy(f"copy {bank_schema}.transactions from stdin") as copy:
            for r in rows:
                copy.write_row([*r[:8], None if r[8] is None else bool(r[8]), r[9]])
    monkeypatch.setenv("AIOS_BANK_DSN", f"{dsn}?options=-csearch_path%3D{bank_schema}")
    defs = build_definitions(settings)

    with dg.instance_for_test() as instance:
        first = _run_job(defs, "ingest_raw_transactions_job", instance)
        assert first.success and _check_passed(first)
        meta = first.asset_materializations_for_node("raw_transactions")[0].metadata
        assert meta["source"].value.startswith("postgresql://")  # not the embedded SQLite
        landed = _landed(settings, "transactions", "txn_id")
        assert len(landed) + meta["records_quarantined"].value == gen.transactions == len(rows)
        assert not landed["account_token"].str.match(r"^\d+$").any()

        # A dispute flagged at the source: only the changed rows are pulled, and they win.
        changed = sorted(landed["txn_id"])[:10]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"update {bank_schema}.transactions set is_disputed = true,"
                " updated_at = now() where txn_id = any(%s)",
                [changed],
            )
        second = _run_job(defs, "ingest_raw_transactions_job", instance)
        meta = second.asset_materializations_for_node("raw_transactions")[0].metadata
        assert meta["rows_landed"].value == 10
        latest = _landed(settings, "transactions", "txn_id").set_index("txn_id")
        assert len(latest) == len(landed)
        assert latest.loc[changed, "is_disputed"].all()
