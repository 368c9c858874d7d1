"""Writing a batch while the next one is prepared never moves the cursor past what is durable.

The runtime masks and validates batch n+1 while batch n's Parquet parts are written in the
background. These tests break the write or the source half-way and check what a user relies on:
the saved cursor covers exactly the batches whose parts are on disk, and a re-run lands the rest
once. They also check that a landed part reads back into pandas with the types it always had.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from aios_dagster.lib.connectors.component import load_connector
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.runtime import run_connector
from aios_dagster.lib.connectors.source import Cursor, SourceBatch, TransientSourceError
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.runner import load_contract
from aios_dagster.lib.lake import LakeResource

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _rows(n: int) -> dict[str, list[Any]]:
    ids = [f"T-{n}{i}" for i in range(3)]
    return {
        "txn_id": ids,
        "customer_id": ["C-1", "C-2", "C-3"],
        "account_number": ["12345678"] * 3,
        "booked_at": ["2026-11-10T10:00:00Z"] * 3,
        "amount": ["12.50", "3", "0.99"],
        "currency": ["GBP"] * 3,
        "merchant": ["Shop"] * 3,
        "channel": ["card"] * 3,
        "is_disputed": ["0", None, "true"],
        "updated_at": ["2026-11-10T10:00:00Z"] * 3,
    }


class Batches:
    """Three batches of transactions; optionally the source fails instead of the third."""

    def __init__(self, fail_third: bool = False) -> None:
        self.fail_third = fail_third

    def describe(self) -> str:
        return "test://transactions"

    def has_new(self, cursor: Cursor) -> bool:
        return cursor.get("n", 0) < 3

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        for n in range(cursor.get("n", 0) + 1, 4):
            if n == 3 and self.fail_third:
                raise TransientSourceError("test://transactions", None, "connection reset")
            yield SourceBatch(pa.table(_rows(n)), f"b{n}", "test://transactions", {"n": n})


@pytest.fixture
def spec(tmp_path: Path) -> ConnectorSpec:
    path = ROOT / "aios_dagster" / "defs" / "ingest" / "raw_transactions" / "defs.yaml"
    return load_connector(path, {"sources_dir": str(tmp_path)})


def _run(spec: ConnectorSpec, tmp_path: Path, reader: Batches) -> Any:
    return run_connector(
        spec,
        reader,
        load_contract(ROOT / "expectations" / "transactions.json"),
        lake=LakeResource(root=str(tmp_path / "lake")),
        pii=PiiMasker(hmac_key="test-key"),
        cursors=CursorStore(root=str(tmp_path / "cursors")),
        now=lambda: NOW,
    )


def _landed_ids(tmp_path: Path) -> list[str]:
    lake = LakeResource(root=str(tmp_path / "lake"))
    return sorted(lake.read("raw_transactions").column("txn_id").to_pylist())


def test_a_failed_write_keeps_the_cursor_at_the_last_durable_batch(
    spec: ConnectorSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = LakeResource.write

    def full_disk_on_batch_2(self: LakeResource, dataset: str, table: pa.Table, part: str) -> Any:
        if dataset == "raw_transactions" and part.endswith("/b2"):
            raise OSError(28, "No space left on device")
        return real_write(self, dataset, table, part)

    monkeypatch.setattr(LakeResource, "write", full_disk_on_batch_2)
    with pytest.raises(OSError, match="No space left"):
        _run(spec, tmp_path, Batches())
    assert CursorStore(root=str(tmp_path / "cursors")).load(spec.name) == {"n": 1}
    assert _landed_ids(tmp_path) == ["T-10", "T-11", "T-12"]

    monkeypatch.setattr(LakeResource, "write", real_write)
    again = _run(spec, tmp_path, Batches())
    assert again.batches == 2
    assert _landed_ids(tmp_path) == sorted(f"T-{n}{i}" for n in (1, 2, 3) for i in range(3))


def test_a_source_failure_still_lands_the_batch_before_it(
    spec: ConnectorSpec, tmp_path: Path
) -> None:
    with pytest.raises(TransientSourceError, match="connection reset"):
        _run(spec, tmp_path, Batches(fail_third=True))
    assert CursorStore(root=str(tmp_path / "cursors")).load(spec.name) == {"n": 2}
    assert _landed_ids(tmp_path) == sorted(f"T-{n}{i}" for n in (1, 2) for i in range(3))


def test_landed_parts_read_back_with_the_types_they_always_had(
    spec: ConnectorSpec, tmp_path: Path
) -> None:
    report = _run(spec, tmp_path, Batches())
    assert report.rows_landed == 9
    frame = LakeResource(root=str(tmp_path / "lake")).read("raw_transactions").to_pandas()
    assert str(frame["is_disputed"].dtype) == "boolean"  # nullable, not object
    assert frame["is_disputed"].isna().sum() == 3
    assert str(frame["amount"].dtype) == "float64"
    assert str(frame["booked_at"].dtype).startswith("datetime64")
    assert frame["txn_id"].map(type).eq(str).all()


def test_a_repeated_customer_lands_once_and_names_the_copy_kept(tmp_path: Path) -> None:
    spec = load_connector(
        ROOT / "aios_dagster" / "defs" / "ingest" / "raw_customers" / "defs.yaml",
        {"sources_dir": str(tmp_path)},
    )
    rows = {
        "customer_id": ["C-1", "C-2", "C-1"],
        "full_name": ["Ann Lee", "Bo Chan", "Ann Lee"],
        "email": ["ann@x.test", "bo@x.test", "ann@x.test"],
        "phone": ["07700 900001", "07700 900002", "07700 900001"],
        "account_number": ["12345678", "87654321", "12345678"],
        "segment": ["retail", "premier", "retail"],
        "joined_on": ["2020-01-01", "2021-02-02", "2020-01-01"],
        "city": ["Leeds", "York", "Leeds"],
    }
    batch = SourceBatch(
        pa.table(rows), "b1", "crm/a.csv", {"n": 1}, row_refs=["a.csv:2", "a.csv:3", "a.csv:4"]
    )

    class One(Batches):
        def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
            yield batch

    lake = LakeResource(root=str(tmp_path / "lake"))
    report = run_connector(
        spec,
        One(),
        load_contract(ROOT / "expectations" / "customers.json"),
        lake=lake,
        pii=PiiMasker(hmac_key="test-key"),
        cursors=CursorStore(root=str(tmp_path / "cursors")),
        now=lambda: NOW,
    )
    assert sorted(lake.read("raw_customers").column("customer_id").to_pylist()) == ["C-1", "C-2"]
    quarantine = lake.read("quarantine_customers").to_pylist()
    assert [(q["record_id"], q["rule"], q["offset"]) for q in quarantine] == [
        ("C-1", "duplicate_of(a.csv:2)", "a.csv:4")
    ]
    assert report.rows_landed == 2 and report.records_quarantined == 1


def test_an_acknowledged_batch_is_acked_before_the_next_is_read(
    spec: ConnectorSpec, tmp_path: Path
) -> None:
    """A bus (JetStream) redelivers what is not acked before it is asked for more."""
    events: list[str] = []

    class Bus(Batches):
        def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
            try:
                for n in range(1, 4):
                    events.append(f"read {n}")
                    yield SourceBatch(
                        pa.table(_rows(n)),
                        f"b{n}",
                        "test://bus",
                        {"n": n},
                        ack=lambda n=n: events.append(f"ack {n}"),
                    )
            finally:
                events.append("closed")

    _run(spec, tmp_path, Bus())
    assert events == ["read 1", "ack 1", "read 2", "ack 2", "read 3", "ack 3", "closed"]
