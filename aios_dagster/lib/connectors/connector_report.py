"""What one connector run did: counts, rules, drift, parts and cursor, for metadata and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from aios_dagster.lib.connectors.conform import SchemaDrift
from aios_dagster.lib.contracts.runner import Contract


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
    phone_matching: str = "in-process"  # or in the phone worker, and why it stopped if it did

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
            "phone_matching": self.phone_matching,
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
