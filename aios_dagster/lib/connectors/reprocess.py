"""Re-process quarantined records after a contract or data fix, without going back to the source.

Every quarantine row written by the landing runtime keeps the whole (already PII-masked) record
as JSON. Re-processing a connector's quarantine validates those records again under the current
contract: records that now pass are landed as new ``raw_<dataset>`` parts (newer
``_ingested_at``, so staging prefers them), records that still fail are written back to
quarantine with their current reasons, and records that never parsed (no JSON copy: a non-JSON
bus message, a binary file) stay in quarantine as they were; those need the source fixed and the
data re-delivered.

Idempotent: each quarantine part is replaced by ``rp-<digest of its records>`` parts; running
it twice lands nothing twice and never rewrites rows an earlier run landed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.connectors.conform import arrow_schema, conform
from aios_dagster.lib.connectors.contract_split import split_table
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.landing import (
    QUARANTINE_SCHEMA,
    count_records,
    quarantine_dataset,
)
from aios_dagster.lib.contracts.runner import Contract
from aios_dagster.lib.lake import LakeResource


@dataclass
class ReprocessReport:
    parts: int = 0
    records: int = 0
    landed: int = 0
    still_quarantined: int = 0
    unparsed: int = 0
    rules: dict[str, int] = field(default_factory=dict)


def reprocess_quarantine(
    spec: ConnectorSpec,
    contract: Contract,
    *,
    lake: LakeResource,
    now: datetime | None = None,
) -> ReprocessReport:
    """Validate every quarantined record of ``spec`` again; land the ones that pass now."""
    stamp = (now or datetime.now(UTC)).isoformat()
    day = stamp[:10]
    qdataset = quarantine_dataset(spec.dataset)
    report = ReprocessReport()
    for path in lake.parts(qdataset):
        rows = pq.read_table(path).to_pandas()
        if rows.empty:
            continue
        report.parts += 1
        # Named after exactly the records it re-validates: running it again on what is still
        # quarantined gets another name, so earlier re-landed rows are never overwritten.
        keys = sorted(
            f"{src}\0{off}" for src, off in zip(rows["source"], rows["offset"], strict=True)
        )
        digest = hashlib.sha1("\n".join(keys).encode(), usedforsecurity=False).hexdigest()[:20]
        stem = f"rp-{digest}"
        new_part = f"ingest_date={day}/{stem}"
        # A re-landed record keeps its original ingest time: a newer copy that landed cleanly
        # meanwhile must stay the newest for staging.
        original = rows["ingested_at"].dropna()
        ingested_at = str(original.max()) if len(original) else stamp
        # Records that never parsed, or whose batch lacked a declared column, need the source
        # fixed and re-delivered; a duplicate copy must never replace the copy that was kept.
        # They stay as they are, every rule row of such a record with them.
        key = rows["source"].astype(str) + "\0" + rows["offset"].astype(str)
        held = rows["record"].isna() | rows["rule"].str.startswith(
            ("schema_missing_column", "duplicate_of(")
        )
        stays = key.isin(key[held])
        unparsed = rows[stays]
        parsed = rows[~stays].drop_duplicates(["source", "offset"])
        n_unparsed = count_records(unparsed)
        report.unparsed += n_unparsed
        report.records += len(parsed)
        records = pd.DataFrame([json.loads(r) for r in parsed["record"]])
        for column in spec.schema_:
            if column not in records:
                records[column] = None
        cast, failures, _ = conform(records, spec.schema_)
        pre = unparsed.reindex(columns=QUARANTINE_SCHEMA.names)
        parsed = parsed.reset_index(drop=True)
        if failures:
            failed = pd.DataFrame(
                [
                    {
                        **parsed.iloc[f.index].to_dict(),
                        "rule": f.rule,
                        "column": f.column,
                        "value": f.value,
                        "ingested_at": stamp,
                    }
                    for f in failures
                ]
            )
            pre = pd.concat([pre, failed.reindex(columns=QUARANTINE_SCHEMA.names)])
            bad = {f.index for f in failures}
            keep = [i for i in range(len(cast)) if i not in bad]
            cast, parsed = cast.iloc[keep], parsed.iloc[keep]
        table = pa.Table.from_pandas(
            cast.reset_index(drop=True), schema=arrow_schema(spec.schema_), preserve_index=False
        )
        offsets = [str(o) for o in parsed["offset"]]
        split = split_table(
            lake,
            spec.dataset,
            table,
            contract,
            # One quarantine part holds one source batch: its records keep source and offset.
            source=str(parsed["source"].iloc[0]) if len(parsed) else str(path),
            part=new_part,
            ref_of=offsets.__getitem__,
            pre_quarantined=pre.reset_index(drop=True),
            lineage={"batch_id": stem, "ingested_at": ingested_at},
        )
        split.write(lake, replace_copies=False)
        landing = split.landing
        report.landed += landing.rows_landed
        # Re-validated records that failed again (type or contract), not the ones left as is.
        report.still_quarantined += landing.records_quarantined - n_unparsed
        for rule, count in landing.result.summary().items():
            report.rules[rule] = report.rules.get(rule, 0) + count
        if lake.part_path(qdataset, new_part) != path:
            path.unlink()
        lake.remove_stale_copies(qdataset, new_part)
    return report
