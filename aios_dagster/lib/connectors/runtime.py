"""The landing loop every connector kind shares: read, mask, conform, contract, write, then advance.

Per batch, in this order, and only in this order:

1. PII policy (tokenize / mask / drop per column) — nothing unmasked exists after this step;
2. schema conformance to the declared landed schema (drift reported by column name);
3. contract validation, split into ``raw_<dataset>`` and ``quarantine_<dataset>``, both written
   as the part ``ingest_date=<day>/<batch_id>`` (so a re-landed batch replaces itself);
4. the cursor is saved, then the source is acknowledged (JetStream ``ack``).

A crash anywhere before 4 re-reads the batch next time; nothing is skipped and, because parts are
named after the deterministic batch id and staging keeps the latest row per record id, nothing
is duplicated either.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from aios_dagster.lib.connectors.conform import SchemaDrift, arrow_schema, conform, detect_drift
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.pii import (
    PiiMasker,
    mask_names,
    mask_series,
    mask_signoff_names,
    mask_text,
)
from aios_dagster.lib.connectors.source import Reject, SourceBatch, SourceReader
from aios_dagster.lib.connectors.spec import ConnectorSpec, PiiRule, resolve_env_placeholders
from aios_dagster.lib.contracts.landing import (
    QUARANTINE_SCHEMA,
    land_with_contract,
    quarantine_dataset,
    record_json,
)
from aios_dagster.lib.contracts.runner import Contract
from aios_dagster.lib.lake import LakeResource

MAX_VALUE_CHARS = 500

_READERS: dict[str, tuple[str, str, str]] = {
    "files": ("aios_dagster.lib.connectors.files_source", "FilesSourceConfig", "FilesReader"),
    "mailbox": (
        "aios_dagster.lib.connectors.mailbox_source",
        "MailboxSourceConfig",
        "MailboxReader",
    ),
    "sql": ("aios_dagster.lib.connectors.sql_source", "SqlSourceConfig", "SqlReader"),
    "http": ("aios_dagster.lib.connectors.http_source", "HttpSourceConfig", "HttpReader"),
    "nats": ("aios_dagster.lib.connectors.nats_source", "NatsSourceConfig", "NatsReader"),
}


def build_reader(spec: ConnectorSpec, environ: dict[str, str] | None = None) -> SourceReader:
    """The reader for ``spec``'s kind, with ``${ENV}`` placeholders resolved now (run time)."""
    module_name, config_name, reader_name = _READERS[spec.kind]
    module = importlib.import_module(module_name)
    config_cls: type[BaseModel] = getattr(module, config_name)
    try:
        config = config_cls.model_validate(resolve_env_placeholders(spec.source, environ))
    except Exception as exc:
        raise ValueError(f"connector {spec.name} ({spec.path}): invalid source: {exc}") from exc
    reader: SourceReader = getattr(module, reader_name)(config)
    return reader


def apply_pii(
    frame: pd.DataFrame, rules: dict[str, PiiRule], masker: PiiMasker
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the connector's PII policy; returns the new frame and counts of what was masked."""
    frame = frame.copy()
    counts: Counter[str] = Counter()
    for column, rule in rules.items():
        if column not in frame.columns or rule.action != "mask":
            continue
        frame[column], stats = mask_series(frame[column])
        counts.update(stats.counts)
        frame[column], signed = mask_signoff_names(frame[column])
        counts["NAME"] += signed
        if rule.names_from and rule.names_from in frame.columns:
            frame[column], n = mask_names(frame[column], frame[rule.names_from])
            counts["NAME"] += n
    for column, rule in rules.items():
        if column not in frame.columns:
            continue
        if rule.action == "tokenize":
            assert rule.as_ is not None
            frame[rule.as_] = masker.tokenize_series(frame[column].astype(object))
            counts["TOKENIZED"] += int(frame[column].notna().sum())
            if rule.as_ != column:
                frame = frame.drop(columns=[column])
        elif rule.action == "drop":
            frame = frame.drop(columns=[column])
    return frame, {k: v for k, v in counts.items() if v}


@dataclass
class ConnectorReport:
    """What one connector run did, for the asset's metadata and for tests."""

    connector: str
    source: str
    batches: int = 0
    rows_in: int = 0
    rows_landed: int = 0
    records_quarantined: int = 0
    rejects: int = 0
    failed_rules: Counter[str] = field(default_factory=Counter)
    pii_masked: Counter[str] = field(default_factory=Counter)
    drift: SchemaDrift = field(default_factory=SchemaDrift)
    parts: list[str] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self, contract: Contract) -> dict[str, Any]:
        return {
            "source": self.source,
            "contract": f"{contract.name}@v{contract.version}",
            "batches": self.batches,
            "rows_in": self.rows_in,
            "rows_landed": self.rows_landed,
            "records_quarantined": self.records_quarantined,
            "rejects": self.rejects,
            "failed_rules": dict(self.failed_rules),
            "pii_masked": dict(self.pii_masked),
            "schema_drift": self.drift.describe(),
            "parts_written": len(self.parts),
            "cursor": dg.MetadataValue.json(_short_cursor(self.cursor)),
            "quarantine_sample": dg.MetadataValue.json(self.samples[:5]),
            "dagster/row_count": self.rows_landed,
        }


def _short_cursor(cursor: dict[str, Any]) -> dict[str, Any]:
    """Cursors of file sources list every file; metadata shows how many instead."""
    return {
        k: (f"<{len(v)} entries>" if isinstance(v, dict | list) else v) for k, v in cursor.items()
    }


def reject_value(spec: ConnectorSpec, value: str | None) -> str | None:
    """What a reject keeps of the raw record: never PII.

    Masked *then* truncated (cutting first splits an identifier so no detector matches it).
    Where the connector drops or tokenizes columns, the raw text is withheld entirely: a
    malformed row still holds those columns in clear (a name, an account number) and nothing
    can tell which field is which; its length and digest identify it for the source owner.
    """
    if not value:
        return None
    if any(rule.action in ("drop", "tokenize") for rule in spec.pii.values()):
        digest = hashlib.sha256(value.encode(errors="replace")).hexdigest()[:16]
        return f"[withheld: {len(value)} chars, sha256 {digest}]"
    return mask_text(value)[:MAX_VALUE_CHARS]


def _reject_rows(
    spec: ConnectorSpec, batch: SourceBatch, rejects: list[Reject], ingested_at: str
) -> list[dict[str, Any]]:
    return [
        {
            "dataset": spec.dataset,
            "record_id": r.record_id,
            "contract": "connector",
            "rule": r.rule,
            "column": None,
            "value": reject_value(spec, r.value),
            "source": batch.source,
            "offset": r.record,
            "record": None,
            "batch_id": batch.batch_id,
            "ingested_at": ingested_at,
        }
        for r in rejects
    ]


def land_batch(
    spec: ConnectorSpec,
    batch: SourceBatch,
    contract: Contract,
    *,
    lake: LakeResource,
    pii: PiiMasker,
    ingested_at: datetime,
    report: ConnectorReport,
) -> None:
    """Land one batch (steps 1-3 of the module docstring); the caller saves the cursor."""
    stamp = ingested_at.isoformat()
    part = f"ingest_date={ingested_at.date().isoformat()}/{batch.batch_id}"
    # integer_object_nulls: an int column with a null stays 7, not 7.0 (ids, card numbers).
    raw = batch.table.to_pandas(integer_object_nulls=True)
    refs = batch.row_refs or [f"{batch.batch_id}#{i}" for i in range(len(raw))]
    # A reject-only batch (an empty or binary file) has no columns: that is not schema drift.
    drift = detect_drift(list(raw.columns), spec.expected_source_columns) if len(raw) else None
    drift = drift or SchemaDrift()
    if batch.sparse and drift.missing:
        # A JSON message without an optional key is a null, not a changed schema: the
        # contract decides whether that column may be null.
        for column in drift.missing:
            raw[column] = None
        drift.missing = []
    masked, counts = apply_pii(raw, spec.pii, pii)
    cast, type_failures, retyped = conform(masked, spec.schema_)
    drift.merge(retyped)
    report.drift.merge(drift)
    report.pii_masked.update(counts)

    # The quarantined copy of a record that failed its type or schema keeps the value that
    # failed (masked, not cast to null), so re-processing sees what the source sent.
    masked_declared = masked[[c for c in spec.schema_ if c in masked.columns]].reset_index(
        drop=True
    )
    pre = _reject_rows(spec, batch, batch.rejects, stamp)
    if drift.missing and len(cast):
        rule = f"schema_missing_column({','.join(drift.missing)})"
        bad_idx = set(range(len(cast)))
        pre += [
            {
                **_quarantine_base(spec, batch, stamp, refs[i], masked_declared, i, contract),
                "rule": rule,
                "column": drift.missing[0],
            }
            for i in range(len(cast))
        ]
    else:
        bad_idx = {f.index for f in type_failures}
        pre += [
            {
                **_quarantine_base(
                    spec, batch, stamp, refs[f.index], masked_declared, f.index, contract
                ),
                "rule": f.rule,
                "column": f.column,
                "value": f.value,
            }
            for f in type_failures
        ]
    keep = [i for i in range(len(cast)) if i not in bad_idx]
    candidates = cast.iloc[keep].reset_index(drop=True)
    pre_frame = pd.DataFrame(pre, columns=QUARANTINE_SCHEMA.names)
    lake.remove_stale_copies(f"raw_{spec.dataset}", part)
    lake.remove_stale_copies(quarantine_dataset(spec.dataset), part)
    landing = land_with_contract(
        lake,
        spec.dataset,
        candidates,
        contract,
        source=batch.source,
        schema=arrow_schema(spec.schema_),
        part=part,
        refs=[refs[i] for i in keep],
        pre_quarantined=pre_frame,
        lineage={"batch_id": batch.batch_id, "ingested_at": stamp},
    )
    report.batches += 1
    report.rows_in += len(raw) + len(batch.rejects)
    report.rows_landed += landing.rows_landed
    report.records_quarantined += landing.records_quarantined
    report.rejects += len(batch.rejects)
    report.failed_rules.update(landing.result.summary())
    report.failed_rules.update(Counter(r["rule"] for r in pre))
    if landing.rows_landed or landing.records_quarantined:
        report.parts.append(part)
    if len(report.samples) < 5 and len(landing.quarantine):
        sample = landing.quarantine.drop(columns=["record"]).head(5 - len(report.samples))
        report.samples += sample.to_dict("records")


def _quarantine_base(
    spec: ConnectorSpec,
    batch: SourceBatch,
    stamp: str,
    ref: str,
    frame: pd.DataFrame,
    index: int,
    contract: Contract,
) -> dict[str, Any]:
    record_id = frame.at[index, contract.record_id] if contract.record_id in frame else None
    return {
        "dataset": spec.dataset,
        "record_id": None if record_id is None or pd.isna(record_id) else str(record_id),
        "contract": f"{contract.name}@v{contract.version}",
        "value": None,
        "source": batch.source,
        "offset": ref,
        "record": record_json(frame, index),
        "batch_id": batch.batch_id,
        "ingested_at": stamp,
    }


def run_connector(
    spec: ConnectorSpec,
    reader: SourceReader,
    contract: Contract,
    *,
    lake: LakeResource,
    pii: PiiMasker,
    cursors: CursorStore,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_batches: int | None = None,
    log: Any = None,
) -> ConnectorReport:
    """Land every batch after the saved cursor; the cursor advances after each durable write."""
    with cursors.exclusive(spec.name), contextlib.ExitStack() as stack:
        report = ConnectorReport(connector=spec.name, source=reader.describe())
        report.cursor = cursors.load(spec.name)
        batches = reader.batches(report.cursor)
        stack.callback(getattr(batches, "close", lambda: None))  # readers release on close
        for batch in batches:
            # A batch may only move the cursor (an empty last page): nothing to land or check.
            if batch.table.num_rows or batch.rejects:
                land_batch(
                    spec, batch, contract, lake=lake, pii=pii, ingested_at=now(), report=report
                )
            cursors.save(spec.name, batch.cursor)
            report.cursor = batch.cursor
            if batch.ack is not None:
                batch.ack()
            if log is not None:
                log.info(
                    f"{spec.name}: landed batch {batch.batch_id} from {batch.source} "
                    f"({report.rows_landed} rows landed, {report.records_quarantined} "
                    "quarantined so far)"
                )
            if max_batches is not None and report.batches >= max_batches:
                break
    if report.drift.any and log is not None:
        log.warning(f"{spec.name}: schema drift in {report.source}: {report.drift.describe()}")
    return report
