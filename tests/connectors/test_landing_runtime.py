"""The landing runtime every connector kind shares: exactly-once landing, drift, quarantine, PII.

The mailbox tests use the real mailbox reader on generated mail; the drift tests feed the runtime
hand-built Arrow batches through a minimal reader, because what they pin is the runtime's
handling of a source that changed shape, whatever system it came from.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.connectors.component import load_connector
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.connectors.mailbox_source import MailboxReader, MailboxSourceConfig
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.reprocess import reprocess_quarantine
from aios_dagster.lib.connectors.runtime import run_connector
from aios_dagster.lib.connectors.source import Cursor, Reject, SourceBatch
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.runner import load_contract
from aios_dagster.lib.generator import deliver_new_emails, generate_reference_data
from aios_dagster.lib.generator.customers import CRM_COLUMNS
from aios_dagster.lib.lake import LakeResource

ROOT = Path(__file__).resolve().parents[2]
EXPECTATIONS = ROOT / "expectations"
CONNECTORS = ROOT / "aios_dagster" / "defs" / "ingest"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class ListReader:
    """A source of prepared batches (stands in for any system in the drift tests)."""

    def __init__(self, batches: list[SourceBatch]) -> None:
        self._batches = batches

    def describe(self) -> str:
        return "test://prepared"

    def has_new(self, cursor: Cursor) -> bool:
        return any(b.cursor.get("n", 0) > cursor.get("n", 0) for b in self._batches)

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        yield from (b for b in self._batches if b.cursor["n"] > cursor.get("n", 0))


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "pii": PiiMasker(hmac_key="test-key"),
        "cursors": CursorStore(root=str(tmp_path / "cursors")),
    }


def _spec(name: str, sources: Path) -> ConnectorSpec:
    return load_connector(CONNECTORS / name / "defs.yaml", {"sources_dir": str(sources)})


def _mailbox(spec: ConnectorSpec, batch_files: int = 40) -> MailboxReader:
    return MailboxReader(MailboxSourceConfig(path=spec.source["path"], batch_files=batch_files))


def _run(spec: ConnectorSpec, reader, env: dict, **kw):
    contract = load_contract(EXPECTATIONS / f"{spec.contract}.json")
    return run_connector(spec, reader, contract, now=lambda: NOW, **env, **kw)


def test_mailbox_lands_each_email_once_and_incrementally(tmp_path: Path, env: dict) -> None:
    sources = tmp_path / "sources"
    gen = generate_reference_data(sources, emails_per_week=60, customers=20, weeks=1)
    spec = _spec("raw_emails", sources)
    first = _run(spec, _mailbox(spec), env)
    assert first.batches == 2  # 60 files in batches of 40
    assert first.rows_in == gen.emails == first.rows_landed + first.records_quarantined
    assert first.records_quarantined == 1  # the planted bad email
    landed = env["lake"].read("raw_emails").to_pandas()
    assert landed["email_id"].is_unique and len(landed) == first.rows_landed
    assert {"_batch_id", "_ingested_at"} <= set(landed.columns)

    again = _run(spec, _mailbox(spec), env)
    assert again.batches == 0 and again.rows_in == 0  # the cursor remembers every file

    new = deliver_new_emails(sources, count=3, seed=9, day=date(2026, 11, 12))
    later = _run(spec, _mailbox(spec), env)
    assert later.rows_landed == 3
    ids = set(env["lake"].read("raw_emails").column("email_id").to_pylist())
    assert {p.stem for p in new} <= ids
    assert len(env["lake"].read("raw_emails")) == first.rows_landed + 3


def test_crash_before_cursor_save_reprocesses_without_duplicates(
    tmp_path: Path, env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    generate_reference_data(sources, emails_per_week=50, customers=20, weeks=1, bad_records=False)
    spec = _spec("raw_emails", sources)
    cursors: CursorStore = env["cursors"]
    saves = {"n": 0}
    real_save = CursorStore.save

    def crash_on_second(self: CursorStore, name: str, cursor: Cursor) -> None:
        saves["n"] += 1
        if saves["n"] == 2:
            raise RuntimeError("killed between the lake write and the cursor save")
        real_save(self, name, cursor)

    monkeypatch.setattr(CursorStore, "save", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        _run(spec, _mailbox(spec, batch_files=20), env)
    monkeypatch.setattr(CursorStore, "save", real_save)
    assert len(cursors.load(spec.name)["files"]) == 20  # only the first batch is durable

    resumed = _run(spec, _mailbox(spec, batch_files=20), env)
    assert resumed.batches == 2  # batch 2 (already written once) and batch 3
    landed = env["lake"].read("raw_emails").to_pandas()
    assert len(landed) == 50 and landed["email_id"].is_unique
    assert len(env["lake"].parts("raw_emails")) == 3


def test_malformed_empty_and_wrongly_encoded_mail_is_quarantined(tmp_path: Path, env: dict) -> None:
    sources = tmp_path / "sources"
    generate_reference_data(sources, emails_per_week=30, customers=20, weeks=1, bad_records=False)
    inbox = sources / "mailbox" / "inbox"
    (inbox / "empty.eml").write_bytes(b"")
    (inbox / "binary.eml").write_bytes(bytes(range(256)) * 8)
    (inbox / "latin1.eml").write_bytes(
        b"From: x@y.test\r\nMessage-ID: <L1@y>\r\nDate: Tue, 10 Nov 2026 09:00:00 +0000\r\n"
        b"Subject: caf\xe9\r\n\r\nMy card at the caf\xe9 was declined\r\n"
    )
    spec = _spec("raw_emails", sources)
    report = _run(spec, _mailbox(spec), env)
    quarantine = env["lake"].read("quarantine_emails").to_pandas()
    by_file = quarantine.groupby("offset")["rule"].apply(set).to_dict()
    assert "column_values_to_be_null(parse_error)" in by_file["empty.eml"]
    assert "column_values_to_not_be_null(sender_token)" in by_file["binary.eml"]
    assert "latin1.eml" not in by_file  # undeclared 8-bit text is decoded, not lost
    landed = env["lake"].read("raw_emails").to_pandas().set_index("email_id")
    assert "declined" in landed.loc["L1", "body"]
    assert report.rows_landed + report.records_quarantined == 33


def test_schema_drift_is_reported_by_name_and_nothing_is_lost(tmp_path: Path, env: dict) -> None:
    spec = _spec("raw_customers", tmp_path)
    good = {
        "customer_id": ["C-1", "C-2"],
        "full_name": ["Ann Lee", "Bo Chan"],
        "email": ["ann@x.test", "bo@x.test"],
        "phone": ["07700 900001", "07700 900002"],
        "account_number": ["12345678", "87654321"],
        "segment": ["retail", "premier"],
        "joined_on": ["2020-01-01", "2021-02-02"],
        "city": ["Leeds", "York"],
    }
    extra = {**good, "customer_id": ["C-3", "C-4"], "ssn": ["AB123456C", "AB654321C"]}
    missing = {k: v for k, v in good.items() if k != "city"} | {"customer_id": ["C-5", "C-6"]}
    batches = [
        SourceBatch(pa.table(good), "b1", "crm/a.csv", {"n": 1}),
        SourceBatch(pa.table(extra), "b2", "crm/b.csv", {"n": 2}),
        SourceBatch(pa.table(missing), "b3", "crm/c.csv", {"n": 3}),
    ]
    report = _run(spec, ListReader(batches), env)
    assert report.drift.new == ["ssn"] and report.drift.missing == ["city"]
    assert (
        "new columns (not landed): ssn"
        in report.metadata(load_contract(EXPECTATIONS / "customers.json"))["schema_drift"]
    )
    landed = env["lake"].read("raw_customers").to_pandas()
    assert sorted(landed["customer_id"]) == ["C-1", "C-2", "C-3", "C-4"]
    assert "ssn" not in landed.columns  # an unreviewed column never lands
    quarantine = env["lake"].read("quarantine_customers").to_pandas()
    assert set(quarantine["rule"]) == {"schema_missing_column(city)"}
    assert sorted(quarantine["record_id"]) == ["C-5", "C-6"]
    assert report.rows_in == 6 == report.rows_landed + report.records_quarantined


def test_retyped_values_and_rejects_are_quarantined_masked(tmp_path: Path, env: dict) -> None:
    spec = _spec("raw_transactions", tmp_path)
    rows = {
        "txn_id": ["T-1", "T-2", "T-3"],
        "customer_id": ["C-1", "C-1", "C-2"],
        "account_number": ["12345678"] * 3,
        "booked_at": ["2026-11-10T10:00:00Z"] * 3,
        "amount": ["12.50", "12,50 EUR", "3"],
        "currency": ["GBP"] * 3,
        "merchant": ["Shop"] * 3,
        "channel": ["card"] * 3,
        "is_disputed": ["0", "1", "maybe"],
        "updated_at": ["2026-11-10T10:00:00Z"] * 3,
    }
    reject = Reject(record="seq 7", rule="not_json", value="oops mail me at jo@bank.test")
    batch = SourceBatch(pa.table(rows), "b1", "bus://txns", {"n": 1}, rejects=[reject])
    report = _run(spec, ListReader([batch]), env)
    quarantine = env["lake"].read("quarantine_transactions").to_pandas()
    rules = dict(zip(quarantine["record_id"].fillna("-"), quarantine["rule"], strict=True))
    assert rules["T-2"] == "type(amount: float64)" and rules["T-3"] == "type(is_disputed: bool)"
    assert rules["-"] == "not_json"
    stored = quarantine.loc[quarantine["rule"] == "not_json", "value"].item()
    # This connector tokenizes a column: an unparseable record's raw text is withheld whole.
    assert "jo@bank.test" not in stored and stored.startswith("[withheld: 28 chars")
    # The quarantined copy keeps the value that failed, not the null it cast to.
    record = json.loads(quarantine.loc[quarantine["record_id"] == "T-2", "record"].item())
    assert record["amount"] == "12,50 EUR" and "account_number" not in record
    again = reprocess_quarantine(
        spec, load_contract(EXPECTATIONS / "transactions.json"), lake=env["lake"], now=NOW
    )
    assert again.landed == 0 and again.still_quarantined >= 2  # still bad: still quarantined
    assert env["lake"].read("raw_transactions").column("txn_id").to_pylist() == ["T-1"]
    assert report.rows_in == 4 == report.rows_landed + report.records_quarantined


def test_quarantined_records_land_after_a_contract_fix(tmp_path: Path, env: dict) -> None:
    sources = tmp_path / "sources"
    crm = sources / "crm"
    crm.mkdir(parents=True)
    rows = [
        ["C-1", "Ann Lee", "ann@x.test", "07700900001", "12345678", "retail", "2020-01-01", "L"],
        ["C-2", "Bo Chan", "bo@x.test", "07700900002", "87654321", "private", "2020-01-01", "Y"],
        ["C-3", "Cy Dee", "cy@x.test", "07700900003", "11223344", "retail", "last week", "Z"],
    ]
    spec = _spec("raw_customers", sources)
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(CRM_COLUMNS)})
    _run(spec, ListReader([SourceBatch(table, "b1", "crm/x.csv", {"n": 1})]), env)
    quarantine = env["lake"].read("quarantine_customers").to_pandas()
    assert sorted(quarantine["record_id"]) == ["C-2", "C-3"]
    record = json.loads(quarantine.loc[quarantine["record_id"] == "C-2", "record"].item())
    assert record["email_token"].startswith("tok_") and "bo@x.test" not in quarantine.to_csv()

    # Unchanged contract: reprocessing changes nothing and duplicates nothing.
    contract = load_contract(EXPECTATIONS / "customers.json")
    same = reprocess_quarantine(spec, contract, lake=env["lake"], now=NOW)
    assert same.records == 2 and same.landed == 0 and same.still_quarantined == 2
    assert len(env["lake"].read("quarantine_customers")) == 2

    fixed = json.loads((EXPECTATIONS / "customers.json").read_text())
    for exp in fixed["expectations"]:
        if exp["kwargs"].get("column") == "segment":
            exp["kwargs"]["value_set"].append("private")
    fixed_path = tmp_path / "customers.json"
    fixed_path.write_text(json.dumps(fixed))
    done = reprocess_quarantine(spec, load_contract(fixed_path), lake=env["lake"], now=NOW)
    assert done.landed == 1 and done.still_quarantined == 1
    landed = latest_records(env["lake"].read("raw_customers").to_pandas(), "customer_id")
    assert sorted(landed["customer_id"]) == ["C-1", "C-2"]
    assert env["lake"].read("quarantine_customers").column("record_id").to_pylist() == ["C-3"]
    again = reprocess_quarantine(spec, load_contract(fixed_path), lake=env["lake"], now=NOW)
    assert again.landed == 0 and again.records == 1  # C-3 (bad date) is still quarantined
    assert len(latest_records(env["lake"].read("raw_customers").to_pandas(), "customer_id")) == 2
    assert len(env["lake"].read("raw_customers")) == 2


def test_no_raw_pii_value_reaches_any_parquet_file(tmp_path: Path, env: dict) -> None:
    sources = tmp_path / "sources"
    generate_reference_data(sources, emails_per_week=80, customers=40, weeks=1)
    spec = _spec("raw_emails", sources)
    _run(spec, _mailbox(spec), env)
    with (sources / "crm" / "customers.csv").open() as f:
        customers = list(csv.DictReader(f))
    secrets = {c["email"] for c in customers} | {c["phone"] for c in customers}
    secrets |= {c["full_name"] for c in customers} | {c["account_number"] for c in customers}
    text = "\n".join(
        str(v)
        for path in Path(env["lake"].root).rglob("*.parquet")
        for col in pq.read_table(path).columns
        for v in col.to_pylist()
        if v is not None
    )
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, leaked[:5]


def test_reject_text_is_masked_before_it_is_cut(tmp_path: Path, env: dict) -> None:
    spec = _spec("raw_routing_labels", tmp_path)  # no drop/tokenize rules: masked text is kept
    raw = "x" * 495 + " mail jane.doe@bank.test card 4111 1111 1111 1111"
    reject = Reject(record="line 9", rule="column_count", value=raw)
    table = pa.table(
        {
            "email_id": ["E-1"],
            "queue": ["cards"],
            "priority": ["P2"],
            "labelled_at": ["2026-11-10T10:00:00Z"],
        }
    )
    _run(
        spec, ListReader([SourceBatch(table, "b1", "labels.csv", {"n": 1}, rejects=[reject])]), env
    )
    stored = env["lake"].read("quarantine_routing_labels").column("value").to_pylist()[0]
    assert "jane" not in stored and "4111" not in stored and len(stored) == 500


def test_absent_json_key_is_a_null_not_a_schema_change(tmp_path: Path, env: dict) -> None:
    spec = _spec("raw_helpdesk_tickets", tmp_path)
    table = pa.table(
        {
            "id": ["T1", "T2"],
            "customer_email": ["a@x.test", "b@x.test"],
            "subject": ["hi", "card"],
            "updated_at": ["2026-11-10T10:00:00Z"] * 2,
        }
    )
    batch = SourceBatch(table, "b1", "api", {"n": 1}, sparse=True)  # as http/nats set it
    report = _run(spec, ListReader([batch]), env)
    assert report.rows_landed == 2 and report.drift.missing == []
    assert env["lake"].read("raw_helpdesk_tickets").column("amount").null_count == 2


def test_a_second_concurrent_run_of_a_connector_is_refused(tmp_path: Path, env: dict) -> None:
    from aios_dagster.lib.connectors.cursors import ConnectorBusyError

    spec = _spec("raw_routing_labels", tmp_path)
    cursors: CursorStore = env["cursors"]
    with cursors.exclusive(spec.name), pytest.raises(ConnectorBusyError, match="another run"):
        _run(spec, ListReader([]), env)
    assert _run(spec, ListReader([]), env).batches == 0  # free again afterwards


def test_int64_columns_keep_large_ids_exact() -> None:
    import pandas as pd

    from aios_dagster.lib.connectors.conform import conform

    frame = pd.DataFrame({"n": ["9007199254740993", None, "3", "2.5", "x", 7]})
    out, failures, _ = conform(frame, {"n": "int64"})
    assert out["n"].iloc[0] == 9007199254740993  # 2**53 + 1: not rounded through float64
    assert out["n"].iloc[1] is pd.NA
    assert [(f.index, f.value, f.rule) for f in failures] == [
        (3, "2.5", "type(n: int64)"),
        (4, "x", "type(n: int64)"),
    ]


def test_reprocessing_never_lands_a_duplicate_over_the_kept_copy(tmp_path: Path, env: dict) -> None:
    spec = _spec("raw_customers", tmp_path / "sources")
    rows = [
        [
            "C-1",
            "Ann Lee",
            "ann@x.test",
            "07700900001",
            "12345678",
            "retail",
            "2020-01-01",
            "Leeds",
        ],
        ["C-1", "Ann Lee", "ann@x.test", "07700900001", "12345678", "retail", "2020-01-01", "York"],
    ]
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(CRM_COLUMNS)})
    _run(spec, ListReader([SourceBatch(table, "b1", "crm/x.csv", {"n": 1})]), env)
    quarantine = env["lake"].read("quarantine_customers").to_pandas()
    assert quarantine["rule"].str.startswith("duplicate_of(").all() and len(quarantine) == 1

    contract = load_contract(EXPECTATIONS / "customers.json")
    again = reprocess_quarantine(spec, contract, lake=env["lake"], now=NOW)
    assert again.landed == 0  # the duplicate stays in quarantine, held
    landed = latest_records(env["lake"].read("raw_customers").to_pandas(), "customer_id")
    assert landed["city"].tolist() == ["Leeds"]
    assert len(env["lake"].read("quarantine_customers")) == 1


def test_a_batch_full_of_phones_is_masked_by_the_phone_worker(tmp_path: Path, env: dict) -> None:
    """A batch with enough phone-bearing rows is matched in the worker process, and lands
    with every number masked; the run's metadata says where phones were matched."""
    sources = tmp_path / "sources"
    generate_reference_data(sources, emails_per_week=10, customers=5, weeks=1)
    spec = _spec("raw_emails", sources)
    sample = next(iter(_mailbox(spec).batches({}))).table.slice(0, 1).to_pylist()[0]
    numbers = [f"07700 9{i:05d}" for i in range(3_600)]
    rows = [
        {
            **sample,
            "email_id": f"<phones-{i}@example.test>",
            "message_id": f"<phones-{i}@example.test>",
            "body": f"Hello, please ring me on {number} after 5pm. Thanks",
        }
        for i, number in enumerate(numbers)
    ]
    table = pa.Table.from_pylist(rows)
    # Three batches: the first waits a while for the worker to start, the later ones find it
    # ready however busy the machine is.
    batches = [
        SourceBatch(table.slice(i * 1_200, 1_200), f"phones-{i}", "mailbox/test", {"n": i + 1})
        for i in range(3)
    ]
    report = _run(spec, ListReader(batches), env)
    assert report.rows_landed == 3_600 and report.pii_masked["PHONE"] == 3_600
    served = re.fullmatch(r"worker process \((\d) of 3 calls\)", report.phone_matching)
    assert served and int(served.group(1)) >= 1, report.phone_matching
    meta = report.metadata(load_contract(EXPECTATIONS / f"{spec.contract}.json"))
    assert meta["phone_matching"] == report.phone_matching
    bodies = env["lake"].read("raw_emails").column("body").to_pylist()
    assert all(body == "Hello, please ring me on [PHONE] after 5pm. Thanks" for body in bodies)
