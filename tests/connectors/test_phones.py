"""Phone detection takes shortcuts for speed; none of them may change which numbers are masked.

A short text is searched for digit runs in one pass, a long one stretch by stretch; the matcher
sees a snippet with letters normalised and is cached. The same number in the same words must be
found however long the text around it is.
"""

from __future__ import annotations

import random

import pytest

from aios_dagster.lib.connectors import phone_text as phones
from aios_dagster.lib.connectors.phone_text import find_phones, mask_phones
from tests.unit.test_pii import FOREIGN_PHONES

CONTEXTS = ("{}", "tel:{}", "call {}.", "({})", "x{}y", "{}:15", "on {}, or", "\n{}\n", "{} / {}")
NOT_PHONES = ("12345678", "2026-11-10", "09:15 (10/11/2026)", "1234 5678 9012 3456", "order 123")


@pytest.mark.parametrize("number", [*FOREIGN_PHONES, "07700 900456", *NOT_PHONES])
def test_a_long_text_finds_the_phones_a_short_one_does(number: str) -> None:
    padding = "Dear team, my statement arrived late again this month. " * 6
    for context in CONTEXTS:
        short = context.format(number, number)
        long = padding + short
        assert len(short) < 200 < len(long)
        shift = len(padding)
        assert find_phones(long) == [(s + shift, e + shift) for s, e in find_phones(short)]
        assert mask_phones(long) == (padding + mask_phones(short)[0], mask_phones(short)[1])
    if number in FOREIGN_PHONES:
        assert mask_phones(f"call {number}.")[0] == "call [PHONE]."


def _example_numbers() -> list[str]:
    """Every region's example numbers of each type, as people write them (national, +, 00)."""
    import phonenumbers

    written: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            spaced = phonenumbers.format_number(
                number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            written += [national, spaced, e164, "00" + e164[1:]]
    return written


def _digit_runs(rng: random.Random, count: int) -> list[str]:
    """Digit runs of phone-like shapes that are mostly not real numbers: the ports' edges."""
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    sep = lambda: rng.choice(["", " ", "-", ".", "/", "  "])  # noqa: E731
    shapes = (
        lambda: (
            "+"
            + digits(rng.randint(1, 3))
            + sep()
            + digits(rng.randint(2, 4))
            + sep()
            + digits(rng.randint(3, 8))
        ),
        lambda: "00" + digits(2) + sep() + digits(rng.randint(6, 11)),
        lambda: "0" + digits(rng.randint(6, 12)),
        lambda: "(" + digits(3) + ") " + digits(3) + "-" + digits(4),
        lambda: digits(3) + sep() + digits(3) + sep() + digits(4),
        lambda: digits(rng.randint(10, 14)) + ":" + digits(2),
    )
    return [rng.choice(shapes)() for _ in range(count)]


def _masked_digits(text: str, spans: list[tuple[int, int]]) -> set[int]:
    return {at for s, e in spans for at in range(s, e) if text[at].isdigit()}


def _reference_spans(text: str) -> list[tuple[int, int]]:
    """What the pure-Python reference port alone finds, through the same runs and snippets."""
    return phones._find(text, lambda snippet, *_: phones._REFERENCE.spans(snippet))


def test_the_fast_port_never_leaves_a_digit_the_reference_port_masks() -> None:
    """The two ports together mask at least every digit the reference masks, in every shape.

    Real numbers of every region come out exactly as the reference has them; random digit
    runs (where the ports' numbering-plan data differ, and where the fast port alone misses
    numbers) may be masked more, never less.
    """
    phones.forget_seen_numbers()
    for number in _example_numbers():
        for context in ("call {} now", "tel:{}.", "({})"):
            text = context.format(number)
            assert find_phones(text) == _reference_spans(text), text
    differs = 0
    for run in _digit_runs(random.Random(20261208), 8_000):
        text = f"ring {run} pls"
        ours, reference = find_phones(text), _reference_spans(text)
        assert _masked_digits(text, reference) <= _masked_digits(text, ours), text
        differs += ours != reference
    assert differs < 40  # a few renumbered plans at most; more means the ports drifted apart


@pytest.mark.parametrize(
    "text",
    # Numbers the fast port's matcher skips inside a slash-separated run, and the reference
    # finds: only the reference's second look masks them.
    ["ring +5/1456/08740605 pls", "ring +20/910/06975316 pls", "ring +1/5141/06906200 pls"],
)
def test_a_number_the_fast_port_misses_is_still_masked(text: str) -> None:
    phones.forget_seen_numbers()
    assert _reference_spans(text), "the reference port finds a phone here"
    assert _masked_digits(text, _reference_spans(text)) <= _masked_digits(text, find_phones(text))
