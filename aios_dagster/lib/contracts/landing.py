"""Land a batch in the lake under its contract: good rows to the dataset, bad rows to quarantine.

This is the one place where "nothing silently dropped" is enforced: every input row ends up in
exactly one of the two outputs, and the counts go to the asset's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.connectors.lake import LakeResource
from aios_dagster.lib.contracts.runner import (
    QUARANTINE_COLUMNS,
    Contract,
    ContractResult,
    validate_frame,
)

QUARANTINE_SCHEMA = pa.schema([(c, pa.string()) for c in QUARANTINE_COLUMNS])


def quarantine_dataset(dataset: str) -> str:
    return f"quarantine_{dataset}"


@dataclass(frozen=True)
class Landing:
    dataset: str
    rows_in: int
    rows_landed: int
    records_quarantined: int
    path: Path
    result: ContractResult

    def metadata(self) -> dict[str, Any]:
        sample = self.result.quarantine.head(5).to_dict("records")
        return {
            "rows_in": self.rows_in,
            "rows_landed": self.rows_landed,
            "records_quarantined": self.records_quarantined,
            "contract": f"{self.result.contract.name}@v{self.result.contract.version}",
            "failed_rules": self.result.summary(),
            "quarantine_sample": dg.MetadataValue.json(sample),
            "path": dg.MetadataValue.path(str(self.path)),
        }


def land_with_contract(
    lake: LakeResource,
    dataset: str,
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source: str,
    schema: pa.Schema | None = None,
) -> Landing:
    """Validate, split and write; re-running the same batch rewrites the same parts."""
    result = validate_frame(frame, contract, source=source)
    if result.table_failures:
        names = ", ".join(o.rule for o in result.table_failures)
        raise ValueError(
            f"{source}: batch breaks table-level rules of contract {contract.name}@v"
            f"{contract.version}: {names}. Nothing was landed; fix the source or the contract."
        )
    good, bad = result.split(frame.reset_index(drop=True))
    table = pa.Table.from_pandas(good, schema=schema, preserve_index=False)
    path = lake.write(f"raw_{dataset}", table)
    lake.write(
        quarantine_dataset(dataset),
        pa.Table.from_pandas(bad, schema=QUARANTINE_SCHEMA, preserve_index=False),
    )
    return Landing(
        dataset=dataset,
        rows_in=len(frame),
        rows_landed=len(good),
        records_quarantined=result.quarantined_records,
        path=path,
        result=result,
    )
