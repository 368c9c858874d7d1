"""The PII policy on an Arrow batch masks exactly what the detectors mask on every row.

``pii_policy`` only sends the detectors the rows that can hold an identifier, and hashes each
distinct value once per run. Neither shortcut may change a single value: these tests compare it
with the detectors applied to every row, on text with every kind of identifier, line breaks,
sender names, empty strings and nulls.
"""

from __future__ import annotations

import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pytest

from aios_dagster.lib.connectors import pii_policy
from aios_dagster.lib.connectors.pii import (
    PiiMasker,
    mask_array,
    mask_names,
    mask_series,
    mask_signoff_names,
)
from aios_dagster.lib.connectors.pii_policy import (
    TokenCache,
    _holds_byte,
    _mask_detected,
    apply_pii,
    token_hasher,
)
from aios_dagster.lib.connectors.spec import PiiRule

NOTES = [
    "recurring payment, no action",
    "statement copy to ann.lee@example.co.uk as requested",
    "card 4111 1111 1111 1111 reported lost",
    "call back on +44 7700 900123 after 5pm",
    "call back on (415) 555-0100 or +49 30 1234567",
    "IBAN GB82 WEST 1234 5698 7654 32, sort code 12-34-56, account 12345678",
    "Thanks for your help,\nBest regards,\nMaria Garcia",
    "Kind regards,\nJo",
    "Hello Ann, Lee here: see you on Monday\n",
    "",
    None,
    "no digits and no at sign, only words from Ann Lee",
]
SENDERS = [
    "Ann Lee",
    None,
    "",
    "Ann Lee",
    "Internet Mail Delivery",
    "Bob",
    "Maria Garcia",
    "jo",
    "Ann Lee",
    "Ann Lee",
    "Ann Lee",
    "Ann Lee",
]
RULES = {
    "note": PiiRule(action="mask", names_from="sender"),
    "email": PiiRule(action="tokenize", as_="email_token"),
    "sender": PiiRule(action="drop"),
}
MASKER = PiiMasker(hmac_key="test-key")


def _everywhere(notes: list[str | None], senders: list[str | None]) -> tuple[list, int]:
    """The detectors applied to every row, as the runtime did before the shortcuts."""
    masked, stats = mask_series(pd.Series(notes, dtype=object))
    masked, signed = mask_signoff_names(masked)
    masked, named = mask_names(masked, pd.Series(senders, dtype=object))
    return masked.tolist(), stats.total + signed + named


@pytest.mark.parametrize("in_a_thread", [False, True])
def test_masking_only_candidate_rows_changes_nothing(in_a_thread: bool) -> None:
    emails = [f"Customer{i % 3}@Example.com " if i % 4 else None for i in range(len(NOTES))]
    table = pa.table({"note": NOTES, "sender": SENDERS, "email": emails})

    with ThreadPoolExecutor(1) as pool:
        masked, counts = apply_pii(
            table, RULES, TokenCache(MASKER), pool=pool if in_a_thread else None
        )

    expected, total = _everywhere(NOTES, SENDERS)
    assert masked.column("note").to_pylist() == expected
    assert sum(v for k, v in counts.items() if k != "TOKENIZED") == total
    assert counts["TOKENIZED"] == sum(e is not None for e in emails)
    assert masked.column("email_token").to_pylist() == [MASKER.tokenize(e) for e in emails]
    assert masked.column_names == ["note", "email_token"]  # sender dropped, email replaced
    assert "[NAME]" in expected[6] and "[EMAIL]" in expected[1]


def test_tokens_are_the_same_across_batches_and_after_the_cache_is_cleared() -> None:
    cache = TokenCache(MASKER, max_entries=3)
    first = cache.tokenize(pa.chunked_array([["a@x.io", "b@x.io", "a@x.io", None]]))
    second = cache.tokenize(pa.chunked_array([["c@x.io", "d@x.io", "A@X.io", ""]]))
    third = cache.tokenize(pa.chunked_array([["c@x.io", "e@x.io", None, "b@x.io", "f@x.io"]]))

    assert first.to_pylist() == [MASKER.tokenize(v) for v in ["a@x.io", "b@x.io", "a@x.io", None]]
    assert second.to_pylist() == [MASKER.tokenize(v) for v in ["c@x.io", "d@x.io", "a@x.io", ""]]
    assert second[2] == first[0]  # case and spacing do not change a customer's token
    assert third.to_pylist() == [
        MASKER.tokenize(v) for v in ["c@x.io", "e@x.io", None, "b@x.io", "f@x.io"]
    ]


def test_a_column_that_is_not_text_is_tokenized_and_masked_like_its_digits() -> None:
    table = pa.table({"account": pa.array([12345678, None, 87654321], pa.int64())})
    rules = {"account": PiiRule(action="tokenize", as_="account_token")}

    tokenized, counts = apply_pii(table, rules, TokenCache(MASKER))

    assert tokenized.column("account_token").to_pylist() == [
        MASKER.tokenize("12345678"),
        None,
        MASKER.tokenize("87654321"),
    ]
    assert counts == {"TOKENIZED": 2}


@pytest.mark.parametrize("bulk", [True, False], ids=["duckdb", "python"])
@pytest.mark.parametrize("key", ["k", "", "é-clé", "x" * 64, "y" * 65, "z" * 200])
def test_tokens_hashed_in_bulk_are_the_maskers_tokens(
    key: str, bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both routes (DuckDB's SQL for many values, a Python loop for a few) give its tokens."""
    monkeypatch.setattr(pii_policy, "DUCKDB_MIN_VALUES", 0 if bulk else 1 << 30)
    masker = PiiMasker(hmac_key=key)
    values = ["Jane@Example.com ", "jane@example.com", "  ", "İstanbul", "Straße", "\x1cx\x1f", ""]
    values += [f"customer{i}@example.test" for i in range(50)]

    hashed = token_hasher(key)(pa.array([*values, None], pa.large_string()))

    assert hashed.to_pylist() == [masker.tokenize(v) for v in values] + [None]
    assert token_hasher(key)(pa.array(["a"])).to_pylist() == [hmac_token(key, "a")]


def hmac_token(key: str, value: str) -> str:
    return "tok_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:24]


def test_each_column_keeps_its_own_cache_and_every_chunk_is_tokenized() -> None:
    cache = TokenCache(MASKER)
    chunks = pa.chunked_array([["a@x.io", None], ["B@x.io", "a@x.io"], []])
    wide = pa.array(["b@x.io", "c@x.io", None], pa.large_string())

    first = cache.tokenize(chunks, "email")
    again = cache.tokenize(chunks, "email")
    other = cache.tokenize(wide, "sender")

    expected = [MASKER.tokenize(v) for v in ["a@x.io", None, "b@x.io", "a@x.io"]]
    assert first.to_pylist() == again.to_pylist() == expected
    assert other.to_pylist() == [MASKER.tokenize(v) for v in ["b@x.io", "c@x.io", None]]
    assert other[0] == first[2]  # the same customer, whichever column named them


TEXTS = [
    *NOTES,
    "mail a@b.co, c@d.co and e@f.co; card 4539-1488-0343-6467 or 4539 1488 0343 6467",
    "already masked: [EMAIL] [CARD] [PHONE] [ACCOUNT], and new: x@y.io 12345678",
    "acct 12345678 12345678 sort 61-15-78 61-15-78, +44 20 7946 0958, 020 7946 0958",
    "IBAN DE89 3704 0044 0532 0130 00 then GB29NWBK60161331926819 and a@b.cc",
    "ends with a phone 07700 900456",
    "digits 2026-11-10 09:15 order 123456789 £1,234.56",
]


def test_masking_each_detectors_rows_only_masks_and_counts_as_the_detectors_do() -> None:
    for texts in (TEXTS, TEXTS[::-1], [t for t in TEXTS if t and "@" in t], [None, None]):
        array = pa.array(texts, pa.string())
        masked, counts = _mask_detected(array)
        expected, stats = mask_array(array)
        assert masked.to_pylist() == expected.to_pylist()
        assert counts == stats.counts


def test_sign_off_names_are_masked_in_a_slice_of_a_batch() -> None:
    """Only line breaks inside the slice count: a batch is a slice of the file's table."""
    notes = ["plain words", "no break here", "Thanks,\nAnn", "Kind regards,\nJo"]
    table = pa.table({"note": notes})
    rules = {"note": PiiRule(action="mask")}

    inside, counts = apply_pii(table.slice(1, 2), rules, TokenCache(MASKER))
    before, none = apply_pii(table.slice(0, 2), rules, TokenCache(MASKER))

    assert inside.column("note").to_pylist() == ["no break here", "Thanks,\n[NAME]"]
    assert counts == {"NAME": 1}
    assert before.column("note").to_pylist() == notes[:2] and none == {}


def test_a_line_break_is_seen_only_inside_an_arrays_own_rows() -> None:
    notes = pa.array(["plain words", "no break here", "Thanks,\nAnn", None, "x\n"])
    assert _holds_byte(notes.slice(1, 2), b"\n") and _holds_byte(notes, b"\n")
    assert not _holds_byte(notes.slice(0, 2), b"\n") and not _holds_byte(notes.slice(3, 1), b"\n")
    assert not _holds_byte(pa.array([], pa.string()), b"\n")
    assert _holds_byte(pa.array(["a", "b\n"], pa.large_string()).slice(1), b"\n")
