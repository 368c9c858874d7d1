"""PII masking and tokenisation: what reaches the lake must not identify anyone."""

import pandas as pd
import pytest

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


# Numbers as customers abroad write them: international style from many regions, and the two
# national styles a UK bank's inbox sees most (UK trunk-0 numbers and North American numbers).
FOREIGN_PHONES = (
    "+1 415 555 0100",  # US
    "+1-415-555-0100",
    "(415) 555-0100",  # US, national style
    "415-555-0100",
    "+49 30 1234567",  # DE
    "+353 1 555 0199",  # IE
    "+33 1 42 68 53 00",  # FR
    "+91 98765 43210",  # IN
    "+55 11 91234-5678",  # BR
    "+81 3-1234-5678",  # JP
    "+61 2 9876 5432",  # AU
    "+34 912 345 678",  # ES
    "+27 21 123 4567",  # ZA
    "+44 20 7946 0958",  # UK landline
    "020 7946 0958",
    "0044 20 7946 0958",
    "+44 (0) 161 496 0000",
)


@pytest.mark.parametrize("phone", FOREIGN_PHONES)
def test_phone_numbers_of_every_region_are_masked(phone: str) -> None:
    text = f"Please call me back on {phone} after 5pm, thanks."
    masked = mask_text(text)
    assert masked == "Please call me back on [PHONE] after 5pm, thanks.", masked
    series, stats = mask_series(pd.Series([text, None]))
    assert series[0] == masked and series[1] is None and stats.counts["PHONE"] == 1


def test_numbers_that_are_not_phones_are_left_alone() -> None:
    text = (
        "On 2026-11-10 at 09:15 (10/11/2026) I paid £1,234.56 and then 1234567.89 EUR for "
        "order 123456789, case #5550100, year 2024 and 2025, card ending 4467, "
        "tracking 1Z999AA10123456784, ticket ORD-2024-0042, 3 items of 250g."
    )
    assert mask_text(text) == text


def test_two_phones_in_a_row_and_beside_other_identifiers() -> None:
    text = "Ring +353 1 555 0199 / +49 30 1234567; acct 12345678, card 4539 1488 0343 6467."
    assert mask_text(text) == "Ring [PHONE] / [PHONE]; acct [ACCOUNT], card [CARD]."
    assert count_pii(text) == {"PHONE": 2, "ACCOUNT": 1, "CARD": 1}


def test_role_and_system_sender_names_mask_no_ordinary_words() -> None:
    from aios_dagster.lib.connectors.pii import mask_names

    texts = pd.Series(
        [
            "Delivery Status Notification (Failure): mail delivery failed",
            "Your Customer Service team will reply",
            "Hi, Jane from Support here. Jane",
        ]
    )
    names = pd.Series(["Internet Mail Delivery", "Customer Service Team", "Jane from Support"])
    masked, count = mask_names(texts, names)
    assert masked[0] == texts[0] and masked[1] == texts[1]
    assert masked[2] == "Hi, [NAME] from Support here. [NAME]"
    assert count == 2


def test_a_name_that_is_also_a_word_is_masked_only_where_written_as_a_name() -> None:
    from aios_dagster.lib.connectors.pii import mask_names

    texts = pd.Series(
        [
            "We walked up the hill in May. Best wishes,\nJacob Hill",
            "may I ask? thanks, jacob hill",
        ]
    )
    names = pd.Series(["Jacob Hill", "jacob hill"])  # the second writes their name lower-case
    masked, count = mask_names(texts, names)
    assert masked[0] == "We walked up the hill in May. Best wishes,\n[NAME] [NAME]"
    assert masked[1] == "may I ask? thanks, [NAME] [NAME]"
    assert count == 4


def test_the_arrow_prefilter_never_hides_a_phone_the_matcher_would_find() -> None:
    """Rows the RE2 prefilter skips must be rows with no phone: checked row by row."""
    import pyarrow as pa

    from aios_dagster.lib.connectors.phone_text import mask_phones
    from aios_dagster.lib.connectors.phones import mask_phones_array

    contexts = ("{}", "tel:{}", "call {}.", "({})", "x{}y", "{}:15", "on {}, or", "\n{}\n")
    numbers = (*FOREIGN_PHONES, "07700 900456", "+44 7700 900123", "12345678", "2026-11-10")
    texts = [c.format(n) for c in contexts for n in numbers]
    masked, count = mask_phones_array(pa.array(texts))
    one_by_one = [mask_phones(t) for t in texts]
    assert masked.to_pylist() == [t for t, _ in one_by_one]
    assert count == sum(n for _, n in one_by_one) >= len(FOREIGN_PHONES) * 6


def test_titles_in_a_display_name_are_not_names() -> None:
    from aios_dagster.lib.connectors.pii import mask_names

    masked, count = mask_names(
        pd.Series(["Dear Mr Smith, Dr Who called"]), pd.Series(["Mr J Smith"])
    )
    assert masked[0] == "Dear Mr [NAME], Dr Who called" and count == 1
