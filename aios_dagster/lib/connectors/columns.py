"""A batch column as one contiguous Arrow array, for the landing steps that need one.

The file readers hand over each batch already in one chunk per column; ``combine_chunks``
would copy such a column all the same, once per step that asks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``column`` as one array: its only chunk as it is, or its chunks copied together."""
    if isinstance(column, pa.Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()


def string_offsets(array: pa.Array) -> np.ndarray:
    """Where each value of a (large) string array starts in its data buffer, and where the
    last ends (``len(array) + 1`` int64 offsets): what byte-level checks in numpy index."""
    wide = pa.types.is_large_string(array.type)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if wide else np.int32)
    return offsets[array.offset : array.offset + len(array) + 1].astype(np.int64)
