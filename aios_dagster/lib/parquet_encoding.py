"""Which columns of a part the Parquet writer should dictionary-encode.

The writer dictionary-encodes every column by default and falls back to plain encoding for a
column chunk once its dictionary outgrows a page. For a column whose values are (nearly) all
distinct — transaction ids, event timestamps, running balances, the tokens of identifiers —
that means hashing every value into a dictionary that is then thrown away: the write costs more
and the file comes out larger than plain encoding would give. A look at the first values of
each column tells those apart cheaply; everything else keeps the default.

Only the encoding changes: readers get the same values and types back either way.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: How many leading rows of a column are looked at.
SAMPLE_ROWS = 2048
#: Below this many non-null sampled values the default (dictionary) is kept: too few to judge.
MIN_SAMPLE = 256
#: A column whose sample is at least this distinct is written plain.
DISTINCT_SHARE = 0.95


def _nearly_unique(column: pa.ChunkedArray) -> bool:
    sample = column.slice(0, SAMPLE_ROWS)
    present = len(sample) - sample.null_count
    if present < MIN_SAMPLE:
        return False
    distinct = pc.count_distinct(sample, mode="only_valid").as_py()
    return bool(distinct >= DISTINCT_SHARE * present)


def dictionary_columns(table: pa.Table) -> bool | list[str]:
    """``use_dictionary`` for ``pyarrow.parquet.write_table``: the columns worth a dictionary.

    A table with a nested column keeps the writer's default for every column: its leaf columns
    are named by paths that a list of top-level names would not match.
    """
    if any(pa.types.is_nested(field.type) for field in table.schema):
        return True
    plain = {
        name
        for name, column in zip(table.column_names, table.columns, strict=True)
        if _nearly_unique(column)
    }
    if not plain:
        return True
    return [name for name in table.column_names if name not in plain]
