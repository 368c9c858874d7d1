"""PII masking and tokenisation: what reaches the lake must not identify anyone."""

import pandas as pd

from aios_dagster.lib.connectors.pii import PiiMasker, count_pii, mask_series, mask_text


def test_mask_text_replaces_each_kind_of_identifier() -> None:
    text = (
        "Hi, I'm jane.doe@example.com, call me on +44 7700 900123 or 07700 900456. "
        "Card 4539 1488 0343 6467 was used; account 12345678, sort code 61-15-78; "
        "IBAN GB29 NWBK 6016 1331 9268 19."
    )
    masked = mask_text(text)
    for raw in ("jane.doe@example.com", "7700 900123", "900456", "4539", "12345678", "NWBK"):
        assert raw not in masked
    assert "61-15-78" not in masked
    for tag in ("[EMAIL]", "[PHONE]", "[CARD]", "[ACCOUNT]", "[IBAN]", "[SORTCODE]"):
        assert tag in masked
    assert "Card [CARD] was used" in masked


def test_mask_keeps_ordinary_numbers_and_amounts() -> None:
    text = "I was charged £12.40 twice on 3 Nov, reference 2024."
    assert mask_text(text) == text


def test_mask_series_counts_and_keeps_nulls() -> None:
    masked, stats = mask_series(pd.Series(["mail a@b.co now", None, "acct 87654321"]))
    assert masked.tolist() == ["mail [EMAIL] now", None, "acct [ACCOUNT]"]
    assert stats.counts["EMAIL"] == 1 and stats.counts["ACCOUNT"] == 1 and stats.total == 2
    assert count_pii("a@b.co and c@d.co") == {"EMAIL": 2}


def test_tokenize_is_keyed_stable_and_case_insensitive() -> None:
    a, b = PiiMasker(hmac_key="k1"), PiiMasker(hmac_key="k2")
    assert a.tokenize("Jane@Example.com") == a.tokenize("jane@example.com ")
    assert a.tokenize("jane@example.com") != b.tokenize("jane@example.com")
    assert "jane" not in (a.tokenize("jane@example.com") or "")
    assert a.tokenize(None) is None and a.tokenize("") is None


def test_sender_names_are_masked_in_their_own_text() -> None:
    from aios_dagster.lib.connectors.pii import mask_names

    texts = pd.Series(["Thanks,\nSiobhan Roberts", "Dear team, ROBERTS here", None])
    names = pd.Series(["Siobhan Roberts", "Siobhan Roberts", "X Y"])
    masked, count = mask_names(texts, names)
    assert masked.tolist() == ["Thanks,\n[NAME] [NAME]", "Dear team, [NAME] here", None]
    assert count == 3


def test_signature_names_are_masked_even_without_a_known_sender() -> None:
    import pandas as pd

    from aios_dagster.lib.connectors.pii import mask_signoff_names

    texts = pd.Series(
        [
            "My card is blocked.\n\nBest wishes,\nJacob Hill\n\nSent from my Galaxy",
            "Thanks,\nAnn",
            "Kind regards,\n[NAME]",
            "No sign-off here\nJacob Hill",
            None,
        ]
    )
    masked, count = mask_signoff_names(texts)
    assert count == 2
    assert masked[0] == "My card is blocked.\n\nBest wishes,\n[NAME]\n\nSent from my Galaxy"
    assert masked[1] == "Thanks,\n[NAME]"
    assert masked[2] == "Kind regards,\n[NAME]"
    assert masked[3] == "No sign-off here\nJacob Hill"  # no signature context: left as is
    assert masked[4] is None


def test_a_number_tokenizes_like_its_digits() -> None:
    from aios_dagster.lib.connectors.pii import PiiMasker

    masker = PiiMasker(hmac_key="k")
    assert masker.tokenize(4000123412341234) == masker.tokenize("4000123412341234")
    assert masker.tokenize(float("nan")) is None and masker.tokenize("") is None
