"""The Arrow landing writes the quarantined copy of a record exactly as the pandas landing did.

Re-processing parses these copies back, so one value written differently (a timestamp's format,
a null written as NaN, an integer as a float) would land differently after a fix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from aios_dagster.lib.connectors.contract_split import _classic_frame, record_copies
from aios_dagster.lib.contracts.landing import record_json


def test_record_copies_are_the_pandas_landings_json_for_every_type() -> None:
    stamp = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
    table = pa.table(
        {
            "id": pa.array(["T1", None, "T3", "Ü-4"], pa.string()),
            "n": pa.array([7, None, -(2**62), 0], pa.int64()),
            "amount": pa.array([12.5, None, float("nan"), 1e-7], pa.float64()),
            "flag": pa.array([True, None, False, True], pa.bool_()),
            "at": pa.array([stamp, None, stamp, stamp], pa.timestamp("us", tz="UTC")),
            "tags": pa.array([["a", "b"], None, [], ["é"]], pa.list_(pa.string())),
            "day": pa.array(["2026-01-01", "", None, "x"], pa.string()),
        }
    )
    positions = [3, 0, 1, 1, 2]

    frame = _classic_frame(table.take(pa.array(positions)))
    expected = [record_json(frame, i) for i in range(len(positions))]

    assert record_copies(table, positions) == expected
    assert record_copies(table, []) == []
    assert '"n": null' in expected[2] and '"at": "2026-11-24T09:30:15.123456+00:00"' in expected[0]
