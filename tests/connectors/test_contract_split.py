"""The Arrow landing writes the quarantined copy of a record exactly as the pandas landing did.

Re-processing parses these copies back, so one value written differently (a timestamp's format,
a null written as NaN, an integer as a float) would land differently after a fix.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

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


def test_record_copies_of_other_types_are_the_pandas_landings_json_too() -> None:
    """A source's own types (a Parquet or SQL batch before conformance) take the classic route."""
    stamp = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
    table = pa.table(
        {
            "day": pa.array([date(2026, 1, 2), None, date(1999, 12, 31)], pa.date32()),
            "small": pa.array([1, None, -3], pa.int32()),
            "price": pa.array([Decimal("1.10"), None, Decimal("-0.5")], pa.decimal128(9, 2)),
            "ns": pa.array([stamp, None, stamp], pa.timestamp("ns", tz="UTC")),
            "naive": pa.array([stamp.replace(tzinfo=None), None, None], pa.timestamp("us")),
            "paris": pa.array([stamp, stamp, None], pa.timestamp("us", tz="Europe/Paris")),
            "big": pa.array(["x", None, "ÿ"], pa.large_string()),
            "cat": pa.array(["a", "b", None]).dictionary_encode(),
            "ints": pa.array([[1, None], None, []], pa.list_(pa.int64())),
        }
    )
    positions = [2, 1, 0]
    frame = _classic_frame(table.take(pa.array(positions)))
    assert record_copies(table, positions) == [record_json(frame, i) for i in range(len(positions))]
