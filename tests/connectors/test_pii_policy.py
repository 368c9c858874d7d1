"""The PII policy on an Arrow batch masks exactly what the detectors mask on every row.

``pii_policy`` only sends the detectors the rows that can hold an identifier, and hashes each
distinct value once per run. Neither shortcut may change a single value: these tests compare it
with the detectors applied to every row, on text with every kind of identifier, line breaks,
sender names, empty strings and nulls.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pytest

from aios_dagster.lib.connectors.pii import (
    PiiMasker,
    mask_names,
    mask_series,
    mask_signoff_names,
)
from aios_dagster.lib.connectors.pii_policy import TokenCache, apply_pii
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

    assert first.to_pylist() == [MASKER.tokenize(v) for v in ["a@x.io", "b@x.io", "a@x.io", None]]
    assert second.to_pylist() == [MASKER.tokenize(v) for v in ["c@x.io", "d@x.io", "a@x.io", ""]]
    assert second[2] == first[0]  # case and spacing do not change a customer's token


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
