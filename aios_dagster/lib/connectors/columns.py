"""A batch column as one contiguous Arrow array, for the landing steps that need one.

The file readers hand over each batch already in one chunk per column; ``combine_chunks``
would copy such a column all the same, once per step that asks.
"""

from __future__ import annotations

import pyarrow as pa


def contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``column`` as one array: its only chunk as it is, or its chunks copied together."""
    if isinstance(column, pa.Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()
