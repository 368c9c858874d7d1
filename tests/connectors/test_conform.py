"""Arrow conformance gives what the value-by-value rules give, for every kind of value.

Batches are cast by ``conform_table`` (Arrow kernels for plain text, the value rules for the
rest); re-processing casts by ``conform`` (pandas). A quarantined record re-processed after a fix
must come out exactly as it would have landed, so the two are held to the same cast values,
failures (row, rule, value) and drift, on text a real export holds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from aios_dagster.lib.connectors.conform import conform, conform_table
from aios_dagster.lib.connectors.spec import ColumnType

TEXT: dict[ColumnType, list[str | None]] = {
    "int64": [
        *("7", "-12", "007", "+5", " 42 ", "1.0", "1e3", "1_000", "9007199254740993"),
        *("123456789012345678", "-0", "1.5", "seven", "", "٣", None),
    ],
    "float64": [
        *("12.50", "-3", "0.1", "1e5", "1E-2", " 2.5", "nan", "inf", "-inf", "12,50"),
        *("1967714.1209446331", "123456789012345.6", ".5", "5.", "£10.00", "1.2.3", None),
    ],
    "bool": [
        *("true", "FALSE", "T", "f", "1", "0", "Yes", "n", " y ", "maybe", "2", "\x1ctrue"),
        None,
    ],
    "timestamp": [
        *("2026-01-01T00:00:00Z", "2026-01-01T10:11:12.5+01:00", "2026-06-30T23:59:59.123456Z"),
        *("2026-01-01T00:00:00-05:30", "2026-01-01", "2026-01-01 10:00", "2026-02-30T00:00:00Z"),
        *("2300-01-01T00:00:00Z", "1850-01-01T00:00:00Z", "yesterday", "2026-13-01T00:00:00Z"),
        *("2026-01-01T24:00:00Z", "2026-01-01T10:00:00", None),
    ],
    "string": ["text", "", " spaced ", None],
    "date": ["2026-01-01", "01/02/2026", None],
    "list<string>": ['["a", "b"]', "plain", "[1, 2]", "{}", None],
}


def _pandas_values(frame: pd.DataFrame, column: str) -> list[Any]:
    return pa.Table.from_pandas(frame[[column]], preserve_index=False).column(0).to_pylist()


@pytest.mark.parametrize("kind", list(TEXT))
def test_arrow_and_value_rules_agree_on_every_value(kind: ColumnType) -> None:
    values = TEXT[kind]
    schema: dict[str, ColumnType] = {"value": kind}
    table = pa.table({"value": pa.array(values, pa.string())})
    frame = pd.DataFrame({"value": pd.Series(values, dtype=object)})

    arrow_cast, arrow_failures, arrow_drift = conform_table(table, schema)
    pandas_cast, pandas_failures, pandas_drift = conform(frame, schema)

    assert arrow_cast.column("value").to_pylist() == _pandas_values(pandas_cast, "value")
    assert arrow_failures == pandas_failures
    assert arrow_drift == pandas_drift


PLAIN: dict[ColumnType, list[str | None]] = {
    "int64": ["7", "-12", "007", "9223372036854775807", None],
    "float64": ["12.50", "-3", "0.1", "123456789012.25", None],
    "bool": ["true", "FALSE", "y", "N", None],
    "timestamp": ["2026-01-01T00:00:00Z", "2026-06-30T23:59:59.123456+02:00", None],
}


@pytest.mark.parametrize("kind", list(PLAIN))
def test_columns_of_plain_text_agree_too(kind: ColumnType) -> None:
    """Columns where every value is plain take Arrow's casts alone: same answer."""
    values = PLAIN[kind]
    table = pa.table({"value": pa.array(values, pa.string())})
    frame = pd.DataFrame({"value": pd.Series(values, dtype=object)})
    arrow_cast, arrow_failures, _ = conform_table(table, {"value": kind})
    pandas_cast, pandas_failures, _ = conform(frame, {"value": kind})
    assert arrow_cast.column("value").to_pylist() == _pandas_values(pandas_cast, "value")
    assert arrow_failures == pandas_failures == []


def test_values_that_do_not_parse_are_failures_with_their_text() -> None:
    table = pa.table({"amount": ["12.50", "n/a", None, "7"], "flag": ["y", "true", "n", "?"]})
    cast, failures, drift = conform_table(table, {"amount": "float64", "flag": "bool"})

    assert cast.column("amount").to_pylist() == [12.5, None, None, 7.0]
    assert cast.column("flag").to_pylist() == [True, True, False, None]
    assert [(f.index, f.rule, f.value) for f in failures] == [
        (1, "type(amount: float64)", "n/a"),
        (3, "type(flag: bool)", "?"),
    ]
    assert not drift.any


def test_a_column_that_mostly_fails_is_reported_retyped_and_a_missing_one_is_null() -> None:
    table = pa.table({"mcc": ["shop", "cafe", "5411"]})
    cast, failures, drift = conform_table(table, {"mcc": "int64", "channel": "string"})

    assert drift.retyped == {"mcc": "int64"}
    assert len(failures) == 2
    assert cast.column("channel").to_pylist() == [None, None, None]
    assert cast.schema.field("mcc").type == pa.int64()


def test_typed_columns_take_the_value_rules() -> None:
    """A Parquet source declares its own types: cast exactly as the pandas rules cast them."""
    table = pa.table(
        {
            "id": pa.array([1, None, 3], pa.int64()),
            "score": pa.array([1.5, float("nan"), 2.0]),
            "note": pa.array([1, 2, None], pa.int64()),
        }
    )
    schema: dict[str, ColumnType] = {"id": "int64", "score": "int64", "note": "string"}
    arrow_cast, arrow_failures, _ = conform_table(table, schema)
    frame = table.to_pandas(integer_object_nulls=True)
    pandas_cast, pandas_failures, _ = conform(frame, schema)

    for column in schema:
        assert arrow_cast.column(column).to_pylist() == _pandas_values(pandas_cast, column)
    assert arrow_failures == pandas_failures
    assert arrow_cast.column("score").to_pylist() == [None, None, 2]


def test_a_batch_in_many_chunks_conforms_as_one_does() -> None:
    """The reader hands over a batch as the parser's blocks: the chunks must not matter."""
    schema: dict[str, ColumnType] = {"value": "float64", "note": "string", "day": "date"}
    values, notes = TEXT["float64"], ["a", None, "", "d", "e", "f", "g", "h", "i"] * 2
    whole = pa.table(
        {
            "value": pa.array(values, pa.string()),
            "note": pa.array(notes[: len(values)], pa.string()),
            "day": pa.array((TEXT["date"] * 6)[: len(values)], pa.string()),
        }
    )
    chunked = pa.Table.from_batches(whole.to_batches(max_chunksize=4))
    assert chunked.column("note").num_chunks > 1

    one, one_failures, _ = conform_table(whole, schema)
    many, many_failures, _ = conform_table(chunked, schema)

    assert many.to_pylist() == one.to_pylist() and many.schema == one.schema
    assert many_failures == one_failures and len(one_failures) > 0


def test_the_timestamp_byte_check_agrees_with_the_plain_pattern() -> None:
    """The numpy check of the commonest form decides exactly as the regex it stands in for."""
    import random

    import pyarrow.compute as pc

    from aios_dagster.lib.connectors.conform import _PLAIN_TIMESTAMP, _plain_timestamps

    rng = random.Random(7)
    base = "2026-01-01T00:00:00Z"
    alphabet = "0123456789-T:Z+.1x é"
    values: list[str | None] = [base, "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", None, ""]
    for _ in range(20_000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        values.append("".join(chars))
    values += ["2026-01-01T10:11:12.5+01:00", "2026-01-01T00:00:00-05:30", "20260101T000000Z"]
    raw = pa.array(values, pa.string())
    # Only values of the form's width, back to back (with nulls between): the bytes are read
    # as a matrix in place instead of gathered.
    fixed = pa.array([v if v and len(v.encode()) == 20 else None for v in values], pa.string())

    for array in (raw, raw.slice(3), raw.cast(pa.large_string()), fixed, fixed.slice(5)):
        expected = pc.fill_null(pc.match_substring_regex(array, _PLAIN_TIMESTAMP), False)
        assert _plain_timestamps(array).to_pylist() == expected.to_pylist()
