"""Real-world and hostile mail through the whole mailbox connector: nothing lost, nothing leaked.

The messages are the hand-written fixtures in ``tests/fixtures/mail`` (one defect each, see its
README); they go through the real reader, PII policy, contract and lake, as a delivery would.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from aios_dagster.lib.connectors.component import load_connector
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.mailbox import RECEIVED_AT_SOURCES
from aios_dagster.lib.connectors.mailbox_source import MailboxReader, MailboxSourceConfig
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.runtime import ConnectorReport, run_connector
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.runner import load_contract
from aios_dagster.lib.lake import LakeResource

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mail"
CONNECTOR = ROOT / "aios_dagster" / "defs" / "ingest" / "raw_emails" / "defs.yaml"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DELIVERED = datetime(2026, 11, 15, 6, 45, tzinfo=UTC)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """Every fixture message, two files that are not mail, all delivered at ``DELIVERED``."""
    folder = tmp_path / "sources" / "mailbox" / "inbox"
    folder.mkdir(parents=True)
    for path in FIXTURES.glob("*.eml"):
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("customer rang, see ticket")
    (folder / "export.msg").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    for path in folder.iterdir():
        os.utime(path, (DELIVERED.timestamp(), DELIVERED.timestamp()))
    return folder


def _run(tmp_path: Path, spec: ConnectorSpec) -> tuple[ConnectorReport, LakeResource]:
    lake = LakeResource(root=str(tmp_path / "lake"))
    report = run_connector(
        spec,
        MailboxReader(MailboxSourceConfig(path=spec.source["path"])),
        load_contract(ROOT / "expectations" / "emails.json"),
        lake=lake,
        pii=PiiMasker(hmac_key="test-key"),
        cursors=CursorStore(root=str(tmp_path / "cursors")),
        now=lambda: NOW,
    )
    return report, lake


def _spec(tmp_path: Path, *, with_time_source: bool = False) -> ConnectorSpec:
    spec = load_connector(CONNECTOR, {"sources_dir": str(tmp_path / "sources")})
    if with_time_source and "received_at_source" not in spec.schema_:
        spec = spec.model_copy(update={"schema_": {**spec.schema_, "received_at_source": "string"}})
    return spec


def test_every_message_lands_once_and_what_cannot_land_is_listed(
    tmp_path: Path, inbox: Path
) -> None:
    report, lake = _run(tmp_path, _spec(tmp_path))
    messages = sorted(p.name for p in FIXTURES.glob("*.eml"))
    landed = lake.read("raw_emails").to_pandas().set_index("source_file")
    quarantine = lake.read("quarantine_emails").to_pandas()

    # Mail without a Date header, with broken MIME, NULs or a repeated Message-ID all lands;
    # of the two copies of one Message-ID the first lands and the second names it.
    assert sorted(landed.index) == [m for m in messages if m != "duplicate_b.eml"]
    assert sorted(zip(quarantine["offset"], quarantine["rule"], strict=True)) == [
        ("duplicate_b.eml", "duplicate_of(duplicate_a.eml)"),
        ("export.msg", "not_matching_pattern(*.eml)"),
        ("notes.txt", "not_matching_pattern(*.eml)"),
    ]
    assert report.rows_in == len(messages) + 2 == report.rows_landed + report.records_quarantined

    assert landed.loc["no_date.eml", "received_at"] == pd.Timestamp("2026-11-11 08:00:03Z")
    assert landed.loc["no_date_no_received.eml", "received_at"] == pd.Timestamp(DELIVERED)
    assert "dispute a payment" in landed.loc["bad_boundary.eml", "body"]
    assert "please freeze it" in landed.loc["digest.eml", "body"]
    assert "\n" not in landed.loc["folded_headers.eml", "subject"]
    assert not landed[["subject", "body"]].apply(lambda c: c.str.contains("\x00")).any().any()

    # A system sender's name is not a person's: "Delivery" stays; foreign phones do not.
    bounce = landed.loc["bounce_with_foreign_phone.eml"]
    assert bounce["subject"] == "Delivery Status Notification (Failure)"
    assert bounce["body"].count("[PHONE]") == 3 and "555" not in bounce["body"]

    # The strays are listed once, not on every run.
    again, _ = _run(tmp_path, _spec(tmp_path))
    assert again.batches == 0 and again.rows_in == 0
    (inbox / "later.msg").write_bytes(b"\xd0\xcf\x11\xe0")  # a stray on its own is listed too
    later, lake = _run(tmp_path, _spec(tmp_path))
    assert later.rows_in == 1 == later.records_quarantined and later.rows_landed == 0
    assert "later.msg" in set(lake.read("quarantine_emails").column("offset").to_pylist())


def test_where_each_time_came_from_is_landed(tmp_path: Path, inbox: Path) -> None:
    report, lake = _run(tmp_path, _spec(tmp_path, with_time_source=True))
    landed = lake.read("raw_emails").to_pandas().set_index("source_file")
    assert set(landed["received_at_source"]) <= set(RECEIVED_AT_SOURCES)
    assert landed.loc["no_date.eml", "received_at_source"] == "received_header"
    assert landed.loc["no_date_no_received.eml", "received_at_source"] == "delivery_time"
    assert landed.loc["digest.eml", "received_at_source"] == "date_header"
    assert report.drift.describe() == "none"


def test_an_undeclared_time_source_is_reported_not_landed(tmp_path: Path, inbox: Path) -> None:
    """Until the connector declares the column, it is schema drift (new column), as any other."""
    spec = _spec(tmp_path)
    report, lake = _run(tmp_path, spec)
    declared = "received_at_source" in spec.schema_
    assert ("received_at_source" in report.drift.new) is not declared
    assert ("received_at_source" in lake.read("raw_emails").schema.names) is declared
