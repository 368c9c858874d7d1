"""Phone masking over Arrow string arrays: the columns a connector lands.

Which text is a phone is decided in ``phone_text`` (libphonenumber, two ports). Its matcher runs
in Python, so it never sees a whole column: an RE2 pattern (:data:`~phone_text.CANDIDATE`, run
by Arrow over every row) keeps only rows holding a digit run shaped like a phone, and only those
rows reach Python, in this thread or in a ``PhoneWorker``'s process.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.columns import contiguous
from aios_dagster.lib.connectors.phone_text import CANDIDATE, mask_phones

#: Masks the phones in rows that the prefilter flagged: ``(masked rows, phones masked)``.
RowMasker = Callable[[pa.Array, str], tuple[pa.Array, int]]


def mask_candidate_rows(texts: pa.Array, placeholder: str = "[PHONE]") -> tuple[pa.Array, int]:
    """Mask each text of a string array in Python (the rows the prefilter flagged)."""
    total = 0
    replaced: list[str | None] = []
    for text in texts.to_pylist():
        if text is None:
            replaced.append(None)
            continue
        new, count = mask_phones(text, placeholder)
        replaced.append(new)
        total += count
    return pa.array(replaced, pa.string()), total


def mask_phones_array(
    array: pa.Array, placeholder: str = "[PHONE]", *, rows: RowMasker = mask_candidate_rows
) -> tuple[pa.Array, int]:
    """Mask phones in a string array; only rows the RE2 prefilter flags reach ``rows``.

    ``rows`` is where the flagged rows are masked: in this thread by default, or in a
    ``PhoneWorker``'s process, which takes the matcher's Python off this process's lock.
    """
    array = contiguous(array)
    candidates = pc.fill_null(pc.match_substring_regex(array, CANDIDATE), False)
    if not pc.any(candidates).as_py():
        return array, 0
    replaced, total = rows(array.filter(candidates), placeholder)
    if not total:
        return array, 0
    return pc.replace_with_mask(array, candidates, replaced), total
