"""A connector's PII policy applied to one Arrow batch: mask, then tokenize or drop, per column.

The detectors themselves live in ``pii`` (and ``phones``); this module decides which rows and
values reach them, so that the cost follows the text that can hold an identifier rather than the
number of rows:

* free text is masked only in rows holding an ``@`` or a digit: every detector needs one (an
  e-mail address, or the digits of a card, IBAN, phone, sort code or account number), so the
  other rows would come back unchanged;
* the sign-off rule only looks at rows with a line break (its name is on the line after) and the
  sender-name rule only at rows whose sender name is known;
* each distinct value of a tokenized column is hashed once per run: identifiers repeat across
  rows and batches, and a token depends on the value and the key alone.

Text columns stay in Arrow throughout. A column of another type (a Parquet integer tokenized or
masked) takes the same pandas route as before, value by value, so its result cannot differ.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.columns import contiguous, string_offsets
from aios_dagster.lib.connectors.phones import RowMasker, mask_candidate_rows, mask_phones_array
from aios_dagster.lib.connectors.pii import (
    _AFTER_PHONES,
    _BEFORE_PHONES,
    PiiMasker,
    mask_names,
    mask_series,
    mask_signoff_names,
)
from aios_dagster.lib.connectors.spec import PiiRule

#: Rows without one of these characters hold nothing any detector can find.
_DETECTABLE = r"[@0-9]"
_SHA256_BLOCK = 64
#: Fewer values than this are hashed in Python: DuckDB's per-query cost is larger.
DUCKDB_MIN_VALUES = 4096
#: Values whose token DuckDB computes: printable ASCII, no whitespace at either end.
_PLAIN_ASCII = r"^[!-~](?:[ -~]*[!-~])?$"
_HMAC_SQL = (
    "SELECT 'tok_' || left(sha256($outer::BLOB || unhex(sha256($inner::BLOB || encode(v)))), 24)"
    " FROM batch"
)


def _is_text(array: pa.ChunkedArray | pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def _as_pandas(array: pa.ChunkedArray) -> pd.Series:
    """A column as the pandas runtime always saw it (an int column with a null keeps ``7``)."""
    return array.to_pandas(integer_object_nulls=True)


def _flag(condition: pa.Array) -> pa.Array:
    """A row filter from a kernel's answer (a null row is simply not selected)."""
    return pc.fill_null(condition, False)


def token_hasher(hmac_key: str) -> Callable[[pa.Array], pa.Array]:
    """``PiiMasker.tokenize`` for a whole string array, in DuckDB's vectorised SHA-256.

    HMAC-SHA256 (RFC 2104) is ``sha256(outer_pad || sha256(inner_pad || text))`` with both pads
    derived from the key alone, so it is two SHA-256 calls over columns: DuckDB runs them in C++
    outside Python's lock, where a loop of ``hmac`` calls spent most of the connector's CPU on
    identifier-heavy exports. Only values that are plain printable ASCII with no whitespace at
    either end go that way (there ``str.strip().lower()`` is ASCII lower-casing alone); anything
    else takes the per-value Python route, so every token equals ``PiiMasker.tokenize``'s
    (``test_pii_policy`` holds it to ``hmac`` itself). So does a call with few values (a later
    batch brings only the customers not seen yet): there one query costs more than the loop.
    """
    key = hmac_key.encode()
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    pads = {"inner": bytes(b ^ 0x36 for b in key), "outer": bytes(b ^ 0x5C for b in key)}
    inner, outer = hashlib.sha256(pads["inner"]), hashlib.sha256(pads["outer"])
    connection = duckdb.connect(config={"threads": 1})  # the policy's own pool does the rest
    lock = threading.Lock()

    def in_python(values: list[str | None]) -> list[str | None]:
        out: list[str | None] = []
        for value in values:
            if value is None or value == "":
                out.append(None)
                continue
            digest = inner.copy()
            digest.update(value.strip().lower().encode())
            mac = outer.copy()
            mac.update(digest.digest())
            out.append(f"tok_{mac.hexdigest()[:24]}")
        return out

    def in_duckdb(values: pa.Array) -> pa.Array:
        with lock:
            connection.register("batch", pa.table({"v": pc.ascii_lower(values)}))
            try:
                result = connection.sql(_HMAC_SQL, params=pads).to_arrow_table()
            finally:
                connection.unregister("batch")
        return contiguous(result.column(0)).cast(pa.string())

    def tokens(values: pa.Array) -> pa.Array:
        values = contiguous(values).cast(pa.string())
        if len(values) < DUCKDB_MIN_VALUES:  # a later batch's few new values: a query costs more
            return pa.array(in_python(values.to_pylist()), pa.string())
        plain = _flag(pc.match_substring_regex(values, _PLAIN_ASCII))
        out = pa.nulls(len(values), pa.string())
        if pc.any(plain).as_py():
            out = pc.replace_with_mask(out, plain, in_duckdb(values.filter(plain)))
        rest = _flag(pc.and_(pc.invert(plain), values.is_valid()))
        if pc.any(rest).as_py():
            hashed = pa.array(in_python(values.filter(rest).to_pylist()), pa.string())
            out = pc.replace_with_mask(out, rest, hashed)
        return out

    return tokens


class TokenCache:
    """HMAC tokens of the distinct values seen in one run, bounded in size.

    Customer identifiers recur in every batch of an export, so a run hashes each of them once
    instead of once per batch. The values and their tokens are kept as Arrow arrays per column,
    so a batch is looked up by one Arrow kernel and only values never seen reach Python. When
    the cache is full it is cleared, never grown: memory stays flat however long the run.
    """

    def __init__(self, masker: PiiMasker, max_entries: int = 1 << 18) -> None:
        self.masker = masker
        self.max_entries = max_entries
        self._hash = token_hasher(masker.hmac_key)
        self._seen: dict[str, tuple[pa.Array, pa.Array]] = {}  # column -> (values, tokens)

    def tokenize(self, array: pa.ChunkedArray | pa.Array, column: str = "") -> pa.Array:
        """Tokens for a text column; nulls stay null. ``column`` names its cache."""
        array = contiguous(array).cast(pa.string())
        values, tokens = self._seen.get(column) or (pa.array([], pa.string()),) * 2
        at = pc.index_in(array, value_set=values)
        unseen = _flag(pc.and_(at.is_null(), array.is_valid()))
        if pc.any(unseen).as_py():
            new = pc.unique(array.filter(unseen))
            if sum(len(v) for v, _ in self._seen.values()) + len(new) > self.max_entries:
                self._seen.clear()  # and start again from this batch alone
                values, tokens = (pa.array([], pa.string()),) * 2
                at, unseen = pa.nulls(len(array), pa.int64()), array.is_valid()
                new = pc.unique(array.drop_null())
            rows = array.filter(unseen)
            # The new values go to the end of the cache: their rows point there.
            where = pc.add(pc.index_in(rows, value_set=new), len(values))
            at = pc.replace_with_mask(at.cast(pa.int64()), unseen, where.cast(pa.int64()))
            values = pa.concat_arrays([values, new])
            tokens = pa.concat_arrays([tokens, self._hash(new)])
            self._seen[column] = (values, tokens)
        return pc.take(tokens, at)


def _mask_detected(
    array: pa.Array, phones: RowMasker = mask_candidate_rows
) -> tuple[pa.Array, dict[str, int]]:
    """``pii.mask_array``, each detector's replacement run only on the rows it matches.

    The detectors run in the same order on the same text, so every value comes out the same;
    counting a detector's matches (which the counts need anyway) tells which rows it changes,
    and the slower replacement skips every other row.
    """
    counts: dict[str, int] = {}
    for name, rx in _BEFORE_PHONES:
        array, counts[name] = _replace_matches(array, rx, f"[{name}]")
    array, counts["PHONE"] = mask_phones_array(array, rows=phones)
    for name, rx in _AFTER_PHONES:
        array, counts[name] = _replace_matches(array, rx, f"[{name}]")
    return array, counts


def _replace_matches(array: pa.Array, rx: str, placeholder: str) -> tuple[pa.Array, int]:
    matches = pc.count_substring_regex(array, rx)
    total = int(pc.sum(matches).as_py() or 0)
    if not total:
        return array, 0
    hit = _flag(pc.greater(matches, 0))
    replaced = pc.replace_substring_regex(array.filter(hit), rx, placeholder)
    return pc.replace_with_mask(array, hit, replaced), total


def _holds_byte(array: pa.Array, byte: bytes) -> bool:
    """Whether any value of a string array holds ``byte`` (an ASCII character): one pass of
    numpy over the values' bytes, far cheaper than a kernel call per row when none does."""
    if not len(array) or array.buffers()[2] is None:
        return False
    offsets = string_offsets(array)
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return bool((data == ord(byte)).any())


def _mask_text(
    array: pa.Array,
    names: pa.ChunkedArray | None,
    counts: Counter[str],
    phones: RowMasker = mask_candidate_rows,
) -> pa.Array:
    """Mask one text column (detectors, sign-offs, the row's sender name), counting by kind."""
    detectable = _flag(pc.match_substring_regex(array, _DETECTABLE))
    if pc.any(detectable).as_py():
        masked, found = _mask_detected(array.filter(detectable), phones)
        counts.update(found)
        array = pc.replace_with_mask(array, detectable, masked.cast(pa.string()))
    signed = _flag(pc.match_substring(array, "\n")) if _holds_byte(array, b"\n") else None
    if signed is not None and pc.any(signed).as_py():
        subset = pd.Series(array.filter(signed).to_pylist(), dtype=object)
        replaced, n = mask_signoff_names(subset)
        counts["NAME"] += n
        array = pc.replace_with_mask(array, signed, pa.array(replaced.tolist(), pa.string()))
    if names is not None:
        # ``mask_names`` skips a null text and a null or empty name: so do we, before Python.
        known = pc.is_valid(array)
        if _is_text(names):
            who_text = contiguous(names)
            known = pc.and_(known, _flag(pc.not_equal(who_text, "")))
        if pc.any(known).as_py():
            texts = pd.Series(array.filter(known).to_pylist(), dtype=object)
            who = _as_pandas(names).to_numpy(dtype=object)[known.to_numpy(zero_copy_only=False)]
            replaced, n = mask_names(texts, pd.Series(who, dtype=object))
            counts["NAME"] += n
            array = pc.replace_with_mask(array, known, pa.array(replaced.tolist(), pa.string()))
    return array


def _set(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    index = table.schema.get_field_index(name)
    if index < 0:
        return table.append_column(name, column)
    return table.set_column(index, name, column)


def _mask_pandas(table: pa.Table, column: str, rule: PiiRule, counts: Counter[str]) -> pa.Table:
    """The pandas route for a column that is not text (its values are strings only here)."""
    values = _as_pandas(table.column(column))
    values, stats = mask_series(values)
    counts.update(stats.counts)
    values, signed = mask_signoff_names(values)
    counts["NAME"] += signed
    if rule.names_from and rule.names_from in table.column_names:
        values, n = mask_names(values, _as_pandas(table.column(rule.names_from)))
        counts["NAME"] += n
    return _set(table, column, pa.array(values.tolist(), pa.string()))


def _mask_columns(
    table: pa.Table, rules: Mapping[str, PiiRule], phones: RowMasker = mask_candidate_rows
) -> tuple[pa.Table, Counter[str]]:
    counts: Counter[str] = Counter()
    for column, rule in rules.items():
        if column not in table.column_names or rule.action != "mask":
            continue
        values = table.column(column)
        if not _is_text(values):
            table = _mask_pandas(table, column, rule, counts)
            continue
        names = None
        if rule.names_from and rule.names_from in table.column_names:
            names = table.column(rule.names_from)
        masked = _mask_text(contiguous(values), names, counts, phones)
        table = _set(table, column, masked)
    return table, counts


def _tokens_of(values: pa.ChunkedArray, tokens: TokenCache, column: str) -> tuple[pa.Array, int]:
    """Tokens of a column and how many values it had."""
    if _is_text(values):
        return tokens.tokenize(values, column), len(values) - values.null_count
    series = _as_pandas(values)
    tokenized = tokens.masker.tokenize_series(series.astype(object)).tolist()
    return pa.array(tokenized, pa.string()), int(series.notna().sum())


def apply_pii(
    table: pa.Table,
    rules: Mapping[str, PiiRule],
    tokens: TokenCache,
    *,
    pool: Executor | None = None,
    phones: RowMasker = mask_candidate_rows,
) -> tuple[pa.Table, dict[str, int]]:
    """Apply the connector's PII policy; returns the new table and counts of what was masked.

    Masking comes first for every column (a sender-name column is read before it is itself
    tokenized or dropped), then tokens replace or join their columns and dropped columns go.
    With a ``pool``, text is masked there while this thread hashes the tokens (the regex
    kernels run outside Python's lock); only when no tokenized column is also masked, so the
    result is the same either way. ``phones`` masks the rows that may hold a phone (a
    ``PhoneWorker`` does it in its own process).
    """
    sources = {c for c, r in rules.items() if r.action == "tokenize" and c in table.column_names}
    masked_columns = {c for c, r in rules.items() if r.action == "mask"}
    early: dict[str, tuple[pa.Array, int]] = {}
    if pool is not None and sources and masked_columns & set(table.column_names):
        if not sources & masked_columns:
            masking = pool.submit(_mask_columns, table, rules, phones)
            early = {c: _tokens_of(table.column(c), tokens, c) for c in sources}
            table, counts = masking.result()
        else:
            table, counts = _mask_columns(table, rules, phones)
    else:
        table, counts = _mask_columns(table, rules, phones)
    for column, rule in rules.items():
        if column not in table.column_names:
            continue
        if rule.action == "tokenize":
            assert rule.as_ is not None
            tokenized, present = early.get(column) or _tokens_of(
                table.column(column), tokens, column
            )
            table = _set(table, rule.as_, tokenized)
            counts["TOKENIZED"] += present
            if rule.as_ != column:
                table = table.drop_columns([column])
        elif rule.action == "drop":
            table = table.drop_columns([column])
    return table, {k: v for k, v in counts.items() if v}
