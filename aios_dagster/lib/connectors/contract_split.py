"""Land an Arrow batch under its contract: good rows to the dataset, bad rows to quarantine.

The Arrow form of ``contracts.landing.land_with_contract``, with the same outputs: the contract
is evaluated by the same ``validate_frame``, the split, quarantine rows and record copies are the
same, and the landed part reads back into pandas with the same column types. What differs is
only where the rows live: the batch stays in Arrow and is written from Arrow, and pandas sees a
view of it for validation (text columns backed by the same Arrow memory) and the few quarantined
records as Python values. A million-row landing no longer builds a Python object per cell.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.connectors.conform import ARROW_TYPES
from aios_dagster.lib.contracts.landing import (
    QUARANTINE_EXTRA,
    QUARANTINE_SCHEMA,
    Landing,
    _jsonable,
    count_records,
    quarantine_dataset,
)
from aios_dagster.lib.contracts.runner import Contract, validate_frame
from aios_dagster.lib.lake import LakeResource

# Rule types the contract runner evaluates itself (not through GE), reading a text column only
# through calls that answer the same for pandas' Arrow-backed strings as for Python strings
# (null test, set membership, duplicates). A regex rule's column is handed over as Python
# strings, as it always was; a contract with any other rule gets the classic frame throughout.
_FAST_RULES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_table_columns_to_match_set",
    }
)
_FAST_KWARGS = frozenset({"column", "mostly", "value_set", "regex", "column_set", "exact_match"})
_REGEX_RULE = "expect_column_values_to_match_regex"

# The pandas types the landing has always produced for each Arrow type (nullable ints and
# bools, nanosecond timestamps): for the validation view, quarantined records and the pandas
# metadata written with each part.
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
# Landed types whose Python values (``to_pylist``) are already what the classic frame's JSON
# holds; floats and timestamps need one step more (see ``_json_values``).
_AS_PYTHON = frozenset(ARROW_TYPES[kind] for kind in ("string", "int64", "bool", "list<string>"))


@dataclass(frozen=True)
class _Reads:
    """What a contract's rules read: ``fast`` when the runner evaluates every rule itself."""

    fast: bool
    columns: frozenset[str] = frozenset()  # read by some rule, or the record id
    as_python: frozenset[str] = frozenset()  # read as Python strings (regex rules)


def _reads(contract: Contract) -> _Reads:
    columns, as_python = {contract.record_id}, set()
    for expectation in contract.suite.get("expectations", []):
        kwargs = expectation.get("kwargs", {})
        kind = expectation.get("type")
        mostly = kwargs.get("mostly", 1.0)
        if (
            kind not in _FAST_RULES
            or not set(kwargs) <= _FAST_KWARGS
            or not isinstance(mostly, int | float)
        ):
            return _Reads(fast=False)
        column = kwargs.get("column")
        if isinstance(column, str):
            columns.add(column)
            if kind == _REGEX_RULE:
                as_python.add(column)
    return _Reads(True, frozenset(columns), frozenset(as_python))


def _classic(array: pa.ChunkedArray) -> pd.Series:
    """A column as the pandas landing always held it."""
    if pa.types.is_timestamp(array.type):
        # A source's naive timestamps stay naive: pandas refuses to give them a zone by astype.
        zone = f", {array.type.tz}" if array.type.tz else ""
        return array.to_pandas().astype(f"datetime64[ns{zone}]")
    if pa.types.is_list(array.type):
        return pd.Series(array.to_pylist(), dtype=object)
    return array.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _classic_frame(table: pa.Table) -> pd.DataFrame:
    columns = {n: _classic(c) for n, c in zip(table.column_names, table.columns, strict=True)}
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def validation_view(table: pa.Table, contract: Contract) -> pd.DataFrame:
    """What ``validate_frame`` reads.

    When the runner evaluates every rule itself, text stays in Arrow memory (as pandas' Arrow
    strings), columns no rule reads are handed over without conversion, and the rest have the
    pandas types the landing always had. A contract with a rule only GE evaluates gets that
    classic frame throughout, exactly as before.
    """
    reads = _reads(contract)
    if not reads.fast:
        return _classic_frame(table)
    columns: dict[str, pd.Series] = {}
    for name, array in zip(table.column_names, table.columns, strict=True):
        text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
        if text and name not in reads.as_python:
            columns[name] = array.to_pandas(types_mapper=lambda _t: pd.StringDtype("pyarrow"))
        elif name in reads.columns or text:
            columns[name] = _classic(array)
        else:
            columns[name] = array.to_pandas(types_mapper=pd.ArrowDtype)
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def record_copies(table: pa.Table, positions: Sequence[int] | np.ndarray) -> list[str]:
    """``record_json`` of the rows at ``positions`` (in that order, repeats allowed).

    The same values and JSON, read column by column (``Series.tolist``) rather than cell by
    cell (``DataFrame.at``), which costs a hundred times more per value.
    """
    if not len(positions):
        return []
    taken = table.take(pa.array(np.asarray(positions, dtype=np.int64)))
    names = taken.column_names
    columns = [_json_values(column) for column in taken.columns]
    return [
        json.dumps(dict(zip(names, row, strict=True)), default=str, sort_keys=True)
        for row in zip(*columns, strict=True)
    ]


def _json_values(array: pa.ChunkedArray) -> list[Any]:
    """A column's values as ``_jsonable`` makes them of the classic frame's, read from Arrow
    directly for the landed schema's types (a pandas Series per column and call cost more
    than the values). Any other type takes the classic conversion itself."""
    kind = array.type
    if kind in _AS_PYTHON:
        return array.to_pylist()
    if kind == ARROW_TYPES["float64"]:
        return [None if v is None or v != v else v for v in array.to_pylist()]  # NaN: null
    if kind == ARROW_TYPES["timestamp"]:
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    return [_jsonable(v) for v in _classic(array).tolist()]


def _repeated(value: Any, rows: int) -> pa.Array:
    """``pa.array([value] * rows)`` without the Python list (an empty one keeps its null type)."""
    return pa.repeat(value, rows) if rows else pa.array([])


@functools.lru_cache(maxsize=64)
def _pandas_metadata(schema: pa.Schema) -> dict[bytes, bytes]:
    """The pandas metadata a part of ``schema`` written from the classic frame carries, so
    readers get nullable ints and bools back exactly as before."""
    frame = _classic_frame(pa.Table.from_pylist([{}], schema=schema))
    for name, field in zip(schema.names, schema, strict=True):
        if pa.types.is_string(field.type):
            frame[name] = pd.Series(["x"], dtype=object)  # 'unicode', as a column with text
    converted = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return dict(converted.schema.metadata or {})


@dataclass(frozen=True)
class SplitBatch:
    """A validated batch, split, and not written yet: ``write`` makes it durable."""

    dataset: str
    part: str
    landing: Landing
    landed: pa.Table | None  # None: the part holds no good rows (removed if it existed)
    quarantine: pa.Table | None  # None: likewise for the quarantine part

    def write(self, lake: LakeResource, *, replace_copies: bool = True) -> None:
        """Write (or remove) both parts. A batch re-landed on a later day replaces its earlier
        copies (``replace_copies``); re-processing names its parts after their records and
        tidies up itself."""
        raw_name, quarantine_name = f"raw_{self.dataset}", quarantine_dataset(self.dataset)
        if replace_copies:
            lake.remove_stale_copies(raw_name, self.part)
            lake.remove_stale_copies(quarantine_name, self.part)
        if self.landed is not None:
            lake.write(raw_name, self.landed, self.part)
        else:
            lake.remove_part(raw_name, self.part)
        if self.quarantine is not None:
            lake.write(quarantine_name, self.quarantine, self.part)
        else:
            lake.remove_part(quarantine_name, self.part)


def split_table(
    lake: LakeResource,
    dataset: str,
    table: pa.Table,
    contract: Contract,
    *,
    source: str,
    part: str,
    ref_of: Callable[[int], str],
    pre_quarantined: pd.DataFrame,
    lineage: dict[str, Any],
) -> SplitBatch:
    """Validate and split ``table`` (already in the landed schema); see the module docstring and
    ``land_with_contract``, whose arguments and outputs these are. ``ref_of`` names the source
    location of the table's row ``i`` (asked only for quarantined rows). Nothing is written."""
    view = validation_view(table, contract)
    result = validate_frame(view, contract, source=source, ref_of=ref_of)
    if result.table_failures:
        names = ", ".join(o.rule for o in result.table_failures)
        raise ValueError(
            f"{source}: batch breaks table-level rules of contract {contract.name}@v"
            f"{contract.version}: {names}. Nothing was landed; fix the source or the contract."
        )
    good = table
    if len(result.bad_index):
        keep = np.ones(table.num_rows, dtype=bool)
        keep[result.bad_index.to_numpy()] = False
        good = table.filter(pa.array(keep))

    bad = result.quarantine.copy()
    offsets = bad["offset"].astype(int).to_numpy() if len(bad) else np.empty(0, dtype=int)
    bad["record"] = record_copies(table, offsets)
    bad["offset"] = [ref_of(int(i)) for i in offsets]
    extra = {k: str(v) for k, v in lineage.items() if k in ("batch_id", "ingested_at")}
    for column in QUARANTINE_EXTRA:
        if column not in bad:
            bad[column] = extra.get(column)
    if len(pre_quarantined):
        bad = pd.concat([pre_quarantined, bad], ignore_index=True)
    bad = bad.reindex(columns=QUARANTINE_SCHEMA.names)

    landed = quarantine = None
    path = None
    if good.num_rows or part == "data":
        landed = good.replace_schema_metadata(_pandas_metadata(table.schema))
        for name, value in lineage.items():
            landed = landed.append_column(f"_{name}", _repeated(value, landed.num_rows))
        path = lake.part_path(f"raw_{dataset}", part)
    if len(bad) or part == "data":
        quarantine = pa.Table.from_pandas(bad, schema=QUARANTINE_SCHEMA, preserve_index=False)
    pre_records = count_records(pre_quarantined)
    landing = Landing(
        dataset=dataset,
        rows_in=table.num_rows + pre_records,
        rows_landed=good.num_rows,
        records_quarantined=result.quarantined_records + pre_records,
        path=path,
        result=result,
        quarantine=bad,
    )
    return SplitBatch(dataset, part, landing, landed, quarantine)
