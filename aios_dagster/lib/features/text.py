"""Text features by the hashing trick: no vocabulary to fit, store or version.

A hashed bag of words is stable across retrains and needs no state in the serving path, which
is why it suits a routing model whose vocabulary drifts (new fraud schemes bring new words).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

TEXT_DIM = 256


def hash_text(texts: pd.Series, dim: int = TEXT_DIM) -> np.ndarray:
    """L2-normalised hashed unigram+bigram counts, float32 (n_rows, dim)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        n_features=dim, alternate_sign=False, norm="l2", ngram_range=(1, 2), lowercase=True
    )
    return vectorizer.transform(texts.fillna("").tolist()).toarray().astype(np.float32)


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def arrow_to_vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Zero-copy-ish inverse of :func:`vectors_to_arrow` (also accepts DuckDB's ARRAY output)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size if pa.types.is_fixed_size_list(array.type) else None
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if width is None:
        width = len(flat) // max(len(array), 1)
    return flat.reshape(len(array), width)
