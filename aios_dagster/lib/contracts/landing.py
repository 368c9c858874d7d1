"""Land a batch in the lake under its contract: good rows to the dataset, bad rows to quarantine.

This is the one place where "nothing silently dropped" is enforced: every input row ends up in
exactly one of the two outputs, and the counts go to the asset's metadata. A quarantine row keeps
the whole (already PII-masked) record as JSON next to the rule it broke, so the record can be
re-processed after a contract or data fix without going back to the source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.contracts.runner import (
    QUARANTINE_COLUMNS,
    Contract,
    ContractResult,
    validate_frame,
)
from aios_dagster.lib.lake import LakeResource

QUARANTINE_EXTRA = ("record", "batch_id", "ingested_at")
QUARANTINE_SCHEMA = pa.schema([(c, pa.string()) for c in (*QUARANTINE_COLUMNS, *QUARANTINE_EXTRA)])


def quarantine_dataset(dataset: str) -> str:
    return f"quarantine_{dataset}"


def count_records(quarantine: pd.DataFrame) -> int:
    """Quarantined *records*, not rows: one per source position (a record breaking two rules
    has two rows; ids may be null, offsets within a source are not)."""
    return len(quarantine[["source", "offset"]].drop_duplicates()) if len(quarantine) else 0


def read_quarantine(lake: LakeResource, dataset: str) -> pd.DataFrame:
    """A dataset's whole quarantine (empty, with its columns, if nothing was ever quarantined)."""
    name = quarantine_dataset(dataset)
    if not lake.parts(name):
        return pd.DataFrame(columns=QUARANTINE_SCHEMA.names)
    return lake.read(name).to_pandas()


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def record_json(frame: pd.DataFrame, index: int) -> str:
    """One row as a JSON object (the quarantined copy of the record)."""
    row = {c: _jsonable(frame.at[index, c]) for c in frame.columns}
    return json.dumps(row, default=str, sort_keys=True)


@dataclass(frozen=True)
class Landing:
    dataset: str
    rows_in: int
    rows_landed: int
    records_quarantined: int
    path: Path | None
    result: ContractResult
    quarantine: pd.DataFrame

    def metadata(self) -> dict[str, Any]:
        sample = self.quarantine.drop(columns=["record"], errors="ignore").head(5)
        return {
            "rows_in": self.rows_in,
            "rows_landed": self.rows_landed,
            "records_quarantined": self.records_quarantined,
            "contract": f"{self.result.contract.name}@v{self.result.contract.version}",
            "failed_rules": self.result.summary(),
            "quarantine_sample": dg.MetadataValue.json(sample.to_dict("records")),
            **({"path": dg.MetadataValue.path(str(self.path))} if self.path else {}),
        }


def land_with_contract(
    lake: LakeResource,
    dataset: str,
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source: str,
    schema: pa.Schema | None = None,
    part: str = "data",
    refs: Sequence[str] | None = None,
    pre_quarantined: pd.DataFrame | None = None,
    lineage: dict[str, Any] | None = None,
) -> Landing:
    """Validate, split and write; re-running the same batch rewrites the same parts.

    ``refs`` names each row's place in the source (``file:line``) for the quarantine ``offset``
    and a duplicate's ``duplicate_of(<kept copy>)`` reason;
    ``pre_quarantined`` are records the connector already refused (unparseable, wrong type),
    written to the same quarantine part; ``lineage`` adds constant columns (batch id, ingest
    time) to the landed rows only, after validation, so contracts see the source's columns.
    """
    frame = frame.reset_index(drop=True)
    ref_of = refs.__getitem__ if refs is not None else None
    result = validate_frame(frame, contract, source=source, ref_of=ref_of)
    if result.table_failures:
        names = ", ".join(o.rule for o in result.table_failures)
        raise ValueError(
            f"{source}: batch breaks table-level rules of contract {contract.name}@v"
            f"{contract.version}: {names}. Nothing was landed; fix the source or the contract."
        )
    good, bad = result.split(frame)
    bad = bad.copy()
    offsets = bad["offset"].astype(int) if len(bad) else pd.Series([], dtype=int)
    bad["record"] = [record_json(frame, i) for i in offsets]
    if refs is not None:
        bad["offset"] = [refs[i] for i in offsets]
    extra = {k: str(v) for k, v in (lineage or {}).items() if k in ("batch_id", "ingested_at")}
    for column in QUARANTINE_EXTRA:
        if column not in bad:
            bad[column] = extra.get(column)
    if pre_quarantined is not None and len(pre_quarantined):
        bad = pd.concat([pre_quarantined, bad], ignore_index=True)
    bad = bad.reindex(columns=QUARANTINE_SCHEMA.names)

    path: Path | None = None
    if len(good) or part == "data":
        table = pa.Table.from_pandas(good, schema=schema, preserve_index=False)
        for name, value in (lineage or {}).items():
            table = table.append_column(f"_{name}", pa.array([value] * len(table)))
        path = lake.write(f"raw_{dataset}", table, part)
    else:
        lake.remove_part(f"raw_{dataset}", part)
    if len(bad) or part == "data":
        lake.write(
            quarantine_dataset(dataset),
            pa.Table.from_pandas(bad, schema=QUARANTINE_SCHEMA, preserve_index=False),
            part,
        )
    else:
        lake.remove_part(quarantine_dataset(dataset), part)
    pre_records = count_records(pre_quarantined) if pre_quarantined is not None else 0
    return Landing(
        dataset=dataset,
        rows_in=len(frame) + pre_records,
        rows_landed=len(good),
        records_quarantined=result.quarantined_records + pre_records,
        path=path,
        result=result,
        quarantine=bad,
    )
