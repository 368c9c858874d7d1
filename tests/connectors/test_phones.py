"""Phone detection takes shortcuts for speed; none of them may change which numbers are masked.

A short text is searched for digit runs in one pass, a long one stretch by stretch; the matcher
sees a snippet with letters normalised and is cached. The same number in the same words must be
found however long the text around it is.
"""

from __future__ import annotations

import pytest

from aios_dagster.lib.connectors.phones import find_phones, mask_phones
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
