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

A batch stays in Arrow from the reader to its Parquet parts (``pii_policy``, ``conform``,
``contract_split``). The write of step 3 runs in a background thread while the next batch goes
through steps 1-3; step 4 for a batch still waits for its own write.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from aios_dagster.lib.connectors.conform import SchemaDrift, conform_table, detect_drift
from aios_dagster.lib.connectors.contract_split import SplitBatch, record_copies, split_table
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.pii import PiiMasker, mask_text
from aios_dagster.lib.connectors.pii_policy import TokenCache, apply_pii
from aios_dagster.lib.connectors.source import Reject, SourceBatch, SourceReader
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.landing import QUARANTINE_SCHEMA
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


def build_reader(spec: ConnectorSpec) -> SourceReader:
    """The reader for ``spec``'s kind (its source already templated by the Component)."""
    module_name, config_name, reader_name = _READERS[spec.kind]
    module = importlib.import_module(module_name)
    config_cls: type[BaseModel] = getattr(module, config_name)
    try:
        config = config_cls.model_validate(spec.source)
    except Exception as exc:
        raise ValueError(f"connector {spec.name} ({spec.path}): invalid source: {exc}") from exc
    reader: SourceReader = getattr(module, reader_name)(config)
    return reader


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


def prepare_batch(
    spec: ConnectorSpec,
    batch: SourceBatch,
    contract: Contract,
    *,
    lake: LakeResource,
    pii: PiiMasker | TokenCache,
    ingested_at: datetime,
    report: ConnectorReport,
    masking: Executor | None = None,
) -> SplitBatch:
    """Steps 1-3 up to the write: mask, conform, validate and split; counted in ``report``.

    The batch stays in Arrow from the reader to the Parquet part. ``pii`` is the masker, or a
    run's ``TokenCache`` around it (so a run hashes each identifier once); text is masked in
    ``masking`` (a thread) while tokens are hashed, when given.
    """
    tokens = pii if isinstance(pii, TokenCache) else TokenCache(pii)
    stamp = ingested_at.isoformat()
    part = f"ingest_date={ingested_at.date().isoformat()}/{batch.batch_id}"
    raw = batch.table
    rows = raw.num_rows
    refs = _RowRefs(batch)
    # A reject-only batch (an empty or binary file) has no columns: that is not schema drift.
    drift = detect_drift(raw.column_names, spec.expected_source_columns) if rows else None
    drift = drift or SchemaDrift()
    if batch.sparse and drift.missing:
        # A JSON message without an optional key is a null, not a changed schema: the
        # contract decides whether that column may be null.
        for column in drift.missing:
            raw = raw.append_column(column, pa.nulls(rows, pa.string()))
        drift.missing = []
    masked, counts = apply_pii(raw, spec.pii, tokens, pool=masking)
    cast, type_failures, retyped = conform_table(masked, spec.schema_)
    drift.merge(retyped)
    report.drift.merge(drift)
    report.pii_masked.update(counts)

    # The quarantined copy of a record that failed its type or schema keeps the value that
    # failed (masked, not cast to null), so re-processing sees what the source sent.
    masked_declared = masked.select([c for c in spec.schema_ if c in masked.column_names])
    pre = _reject_rows(spec, batch, batch.rejects, stamp)
    if drift.missing and rows:
        rule = f"schema_missing_column({','.join(drift.missing)})"
        everything = range(rows)
        pre += [
            {**base, "rule": rule, "column": drift.missing[0]}
            for base in _quarantine_base(
                spec, batch, stamp, refs, masked_declared, everything, contract
            )
        ]
        bad = np.ones(rows, dtype=bool)
    else:
        where = [f.index for f in type_failures]
        pre += [
            {**base, "rule": f.rule, "column": f.column, "value": f.value}
            for f, base in zip(
                type_failures,
                _quarantine_base(spec, batch, stamp, refs, masked_declared, where, contract),
                strict=True,
            )
        ]
        bad = np.zeros(rows, dtype=bool)
        bad[where] = True
    candidates = cast.filter(pa.array(~bad))
    pre_frame = pd.DataFrame(pre, columns=QUARANTINE_SCHEMA.names)
    split = split_table(
        lake,
        spec.dataset,
        candidates,
        contract,
        source=batch.source,
        part=part,
        ref_of=functools.partial(_nth, refs, np.flatnonzero(~bad)),
        pre_quarantined=pre_frame,
        lineage={"batch_id": batch.batch_id, "ingested_at": stamp},
    )
    landing = split.landing
    report.batches += 1
    report.rows_in += rows + len(batch.rejects)
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
    return split


class _RowRefs:
    """Where each row of a batch came from, built only for the rows that need it."""

    def __init__(self, batch: SourceBatch) -> None:
        self.batch = batch

    def __getitem__(self, row: int) -> str:
        if self.batch.row_refs:
            return self.batch.row_refs[row]
        return f"{self.batch.batch_id}#{row}"


def _nth(refs: _RowRefs, rows: np.ndarray, i: int) -> str:
    return refs[int(rows[i])]


def _quarantine_base(
    spec: ConnectorSpec,
    batch: SourceBatch,
    stamp: str,
    refs: _RowRefs,
    masked: pa.Table,
    rows: Sequence[int],
    contract: Contract,
) -> list[dict[str, Any]]:
    """The quarantine row of each of ``rows`` before its rule is known: ids and record copy."""
    records = record_copies(masked, list(rows))
    ids: list[Any] = [None] * len(records)
    if contract.record_id in masked.column_names and len(records):
        taken = masked.column(contract.record_id).take(pa.array(list(rows), pa.int64()))
        ids = taken.to_pandas(integer_object_nulls=True).tolist()
    return [
        {
            "dataset": spec.dataset,
            "record_id": None if record_id is None or pd.isna(record_id) else str(record_id),
            "contract": f"{contract.name}@v{contract.version}",
            "value": None,
            "source": batch.source,
            "offset": refs[i],
            "record": record,
            "batch_id": batch.batch_id,
            "ingested_at": stamp,
        }
        for i, record_id, record in zip(rows, ids, records, strict=True)
    ]


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
    """Land every batch after the saved cursor; the cursor advances after each durable write.

    A batch's Parquet parts are written in a background thread while the next batch is masked
    and validated (the encoder works outside Python's lock); its cursor is saved, and the
    source acknowledged, only once both parts are written, in batch order. A batch that must be
    acknowledged is settled before the next one is read, as a bus expects.
    """
    tokens = TokenCache(pii)
    with (
        cursors.exclusive(spec.name),
        contextlib.ExitStack() as stack,
        ThreadPoolExecutor(1, thread_name_prefix=f"write {spec.name}") as writer,
        ThreadPoolExecutor(1, thread_name_prefix=f"mask {spec.name}") as masking,
    ):
        report = ConnectorReport(connector=spec.name, source=reader.describe())
        report.cursor = cursors.load(spec.name)
        batches = reader.batches(report.cursor)
        stack.callback(getattr(batches, "close", lambda: None))  # readers release on close
        pending: list[tuple[Future[None] | None, SourceBatch, str]] = []

        def settle() -> None:
            """Wait for the batch in flight to be written, then save its cursor and ack."""
            while pending:
                written, done, message = pending.pop()
                if written is not None:
                    written.result()
                cursors.save(spec.name, done.cursor)
                report.cursor = done.cursor
                if done.ack is not None:
                    done.ack()
                if log is not None:
                    log.info(message)

        try:
            for batch in batches:
                # A batch may only move the cursor (an empty last page): nothing to land.
                split = None
                if batch.table.num_rows or batch.rejects:
                    split = prepare_batch(
                        spec,
                        batch,
                        contract,
                        lake=lake,
                        pii=tokens,
                        ingested_at=now(),
                        report=report,
                        masking=masking,
                    )
                message = (
                    f"{spec.name}: landed batch {batch.batch_id} from {batch.source} "
                    f"({report.rows_landed} rows landed, {report.records_quarantined} "
                    "quarantined so far)"
                )
                settle()
                written = writer.submit(split.write, lake) if split is not None else None
                pending.append((written, batch, message))
                if batch.ack is not None:
                    settle()  # a bus wants its ack before the reader fetches the next batch
                if max_batches is not None and report.batches >= max_batches:
                    break
        finally:
            # The batch before a failure is made durable (and its cursor saved) as before;
            # if its write failed too, that error is the one raised.
            settle()
    if report.drift.any and log is not None:
        log.warning(f"{spec.name}: schema drift in {report.source}: {report.drift.describe()}")
    return report
