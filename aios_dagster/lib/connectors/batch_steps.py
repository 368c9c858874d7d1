"""Steps 1-3 of landing one batch: mask (step 1), then conform, validate and split (2-3).

Step 1 is its own function so that the run loop (``runtime``) can mask the next batch while this
one is conformed and validated: most of both is Arrow kernels, which run outside Python's lock.
What is quarantined keeps its masked value and where it came from; a reject never keeps PII.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.connectors.conform import SchemaDrift, conform_table, detect_drift
from aios_dagster.lib.connectors.connector_report import ConnectorReport
from aios_dagster.lib.connectors.contract_split import SplitBatch, record_copies, split_table
from aios_dagster.lib.connectors.phones import RowMasker, mask_candidate_rows
from aios_dagster.lib.connectors.pii import PiiMasker, mask_text
from aios_dagster.lib.connectors.pii_policy import TokenCache, apply_pii
from aios_dagster.lib.connectors.source import Reject, SourceBatch
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.landing import QUARANTINE_SCHEMA
from aios_dagster.lib.contracts.runner import Contract
from aios_dagster.lib.lake import LakeResource

MAX_VALUE_CHARS = 500


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


@dataclass
class MaskedBatch:
    """A batch after step 1: nothing unmasked is left in ``masked``."""

    batch: SourceBatch
    masked: pa.Table
    counts: dict[str, int]
    drift: SchemaDrift


def mask_batch(
    spec: ConnectorSpec,
    batch: SourceBatch,
    tokens: TokenCache,
    *,
    masking: Executor | None = None,
    phones: RowMasker = mask_candidate_rows,
) -> MaskedBatch:
    """Step 1: the PII policy, after the source's columns are checked against the spec's.

    It touches nothing shared but ``tokens``, so the run loop can mask the next batch in its
    own thread while this one is conformed and validated; ``masking`` (a thread) masks text
    while the tokens are hashed, when given; ``phones`` masks the rows that may hold a phone.
    """
    raw = batch.table
    rows = raw.num_rows
    # A reject-only batch (an empty or binary file) has no columns: that is not schema drift.
    drift = detect_drift(raw.column_names, spec.expected_source_columns) if rows else None
    drift = drift or SchemaDrift()
    if batch.sparse and drift.missing:
        # A JSON message without an optional key is a null, not a changed schema: the
        # contract decides whether that column may be null.
        for column in drift.missing:
            raw = raw.append_column(column, pa.nulls(rows, pa.string()))
        drift.missing = []
    masked, counts = apply_pii(raw, spec.pii, tokens, pool=masking, phones=phones)
    return MaskedBatch(batch=batch, masked=masked, counts=counts, drift=drift)


def split_masked(
    spec: ConnectorSpec,
    step1: MaskedBatch,
    contract: Contract,
    *,
    lake: LakeResource,
    ingested_at: datetime,
    report: ConnectorReport,
) -> SplitBatch:
    """Steps 2-3 up to the write: conform, validate and split; counted in ``report``."""
    batch, masked, drift = step1.batch, step1.masked, step1.drift
    stamp = ingested_at.isoformat()
    part = f"ingest_date={ingested_at.date().isoformat()}/{batch.batch_id}"
    rows = batch.table.num_rows
    refs = _RowRefs(batch)
    cast, type_failures, retyped = conform_table(masked, spec.schema_)
    drift.merge(retyped)
    report.drift.merge(drift)
    report.pii_masked.update(step1.counts)

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
    """Steps 1-3 up to the write for one batch, in this thread (the loop overlaps them).

    The batch stays in Arrow from the reader to the Parquet part. ``pii`` is the masker, or a
    run's ``TokenCache`` around it (so a run hashes each identifier once).
    """
    tokens = pii if isinstance(pii, TokenCache) else TokenCache(pii)
    step1 = mask_batch(spec, batch, tokens, masking=masking)
    return split_masked(spec, step1, contract, lake=lake, ingested_at=ingested_at, report=report)


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
