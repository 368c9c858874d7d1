"""A secret never lands in run config, tags, metadata, logs, the event log or any stored file.

The PII key is the project's secret that the pipeline really uses (it keys the HMAC tokens):
run an ingest with a known key, prove it was used, then search every place Dagster and the
pipeline write for it.
"""

import logging
import random
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.generator.customers import make_customers, write_customers_csv
from aios_dagster.settings import Settings


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_the_pii_key_is_used_but_never_stored_or_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"pii-key-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIOS_PII_KEY", secret)
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data"), "AIOS_PII_KEY": secret})
    customers = make_customers(random.Random(3), 40, date(2026, 11, 9))
    write_customers_csv(settings.sources_dir / "crm" / "customers_1.csv", customers)
    defs = build_definitions(settings)

    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = defs.resolve_job_def("ingest_raw_customers_job").execute_in_process(
            instance=instance
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        events = "\n".join(repr(e) for e in instance.all_logs(result.run_id))

    # The key was really used: the landed tokens are HMACs under it.
    landed = pq.read_table(settings.lake_dir / "raw_customers").to_pylist()
    masker = PiiMasker(hmac_key=secret)
    tokens = {row["email_token"] for row in landed}
    assert {masker.tokenize(c.email) for c in customers} == tokens

    assert secret not in repr(run.run_config) and secret not in repr(run.tags)
    assert len(events) > 1000 and secret not in events  # metadata and log lines included
    assert secret not in caplog.text
    assert _files_holding(home, secret.encode()) == []  # event log, runs, compute logs
    assert _files_holding(settings.data_dir, secret.encode()) == []  # lake, cursors, state
