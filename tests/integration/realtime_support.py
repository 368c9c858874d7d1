"""Shared pieces of the real-time tests: a copy of a whole-flow run, new mail, lake readers."""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa

from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.settings import Settings
from tests.integration.pipeline import PipelineRun

_MESSAGE_ID = re.compile(rb"^Message-ID:.*$", re.IGNORECASE | re.MULTILINE)


def copy_of(run: PipelineRun, target: Path, triton_url: str) -> Settings:
    """The run's data folder copied (the handler writes into its lake), on ``triton_url``."""
    shutil.copytree(
        run.settings.data_dir, target, ignore=shutil.ignore_patterns("dagster_home", "triton*")
    )
    return replace(Settings.from_env({"AIOS_DATA_DIR": str(target)}), triton_grpc_url=triton_url)


def new_mail(settings: Settings, count: int, prefix: str) -> dict[str, bytes]:
    """``count`` real messages of the run's mailbox under new Message-IDs: mail never seen."""
    sources = sorted(settings.mailbox_dir.glob("*.eml"))
    assert len(sources) >= count, f"only {len(sources)} messages in {settings.mailbox_dir}"
    mail: dict[str, bytes] = {}
    for i, path in enumerate(sources[:count]):
        raw = path.read_bytes()
        email_id = f"{prefix}-{i:04d}-{uuid.uuid4().hex[:6]}"
        header = f"Message-ID: <{email_id}@mail.test>".encode()
        raw, found = _MESSAGE_ID.subn(header, raw, count=1)
        if not found:
            raw = header + b"\r\n" + raw
        mail[email_id] = raw
    return mail


def current_decisions(settings: Settings, model: str = "email_router") -> pa.Table:
    glob = str(settings.lake_dir / f"{model}_predictions" / "**" / "*.parquet")
    with duckdb.connect() as conn:
        return conn.sql(
            f"select * from read_parquet('{glob}', union_by_name = true)"
        ).to_arrow_table()


def quarantined(settings: Settings) -> pa.Table:
    glob = str(settings.lake_dir / "quarantine_emails" / "**" / "*.parquet")
    with duckdb.connect() as conn:
        return conn.sql(
            f"select * from read_parquet('{glob}', union_by_name = true)"
        ).to_arrow_table()


def kafka_handler(bootstrap: str, topic: str, **overrides: object) -> HandlerSpec:
    return HandlerSpec(
        name="test_kafka_handler",
        model="email_router",
        connector="raw_emails",
        source={
            "kind": "kafka",
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "group_id": f"test-{topic}",
        },
        **overrides,  # type: ignore[arg-type]
    )
