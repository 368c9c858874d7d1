"""Phone numbers in free text, found by Google's libphonenumber (the ``phonenumbers`` package).

Customers write numbers in every national and international style (``+1 415 555 0100``,
``(415) 555-0100``, ``+49 30 1234567``, ``0044 20 7946 0958``); hand-written patterns only ever
knew the UK ones. libphonenumber knows every region's numbering plan, so it decides what is a
phone. What counts as one:

* a number written with an international prefix (``+`` or ``00``) and a possible length for its
  country: a customer's mistyped or unassigned number is still theirs to protect;
* a national number of the home region written with its trunk prefix (``020 7946 0958``);
* a national number that is *valid* in one of the other regions (``(415) 555-0100``): without a
  prefix, validity is what tells a phone from an order or invoice number.

The matcher reads only a short snippet around each digit run shaped like one of the three forms
(:data:`CANDIDATE`), so its cost follows the number of phone-like runs, not the length of the
text. This module works on Python strings alone and imports no Arrow: a ``PhoneWorker``
process starts on it in a fraction of the time (``phones`` is the Arrow side).

Two implementations of libphonenumber read each snippet. ``rphonenumbers`` (bindings to a Rust
port) answers first, several times faster than the pure-Python ``phonenumbers``; its answer is
taken only when it masks every digit of the run and the snippet has no digit outside it. Any
other answer (no phone found, part of the run left, digits in the context) is decided by
``phonenumbers``, the reference port. So whatever the reference masks is masked: a digit the
reference would hide is either inside a run the fast port masked whole, or the reference
decided. The two ports' numbering-plan data differ at the edges (a country that renumbered),
and there the fast port may mask a number the reference would not read as possible; masking
more is the safe side of a privacy rule. ``test_phones`` holds the combination to this.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterator
from types import ModuleType

import phonenumbers
import rphonenumbers

HOME_REGION = "GB"  # the bank's own numbering plan: how a number without a prefix is read first
OTHER_REGIONS = ("US",)  # national styles also recognised, when the number is valid there

_SEP = r"[ \t().\-/]{0,3}"
# A digit run that could be a phone in one of the three forms above: "+" and at least 7 digits,
# a trunk "0" and at least 7 digits, or at least 10 digits without a prefix. Valid for both RE2
# (Arrow's prefilter) and Python's ``re`` (the runs within a candidate row).
CANDIDATE = (
    rf"\+[ \t]?\(?\d(?:{_SEP}\d){{6,}}"
    rf"|(?:^|[^\w+])\(?0\d(?:{_SEP}\d){{5,}}"
    rf"|\(?\d(?:{_SEP}\d){{9,}}"
)
# Within a flagged row, Python finds each run (one simple pattern, fast in ``re``) and applies
# the same three forms to it before asking the matcher.
_RUN = re.compile(rf"[+(]?\d(?:{_SEP}\d){{6,}}")
# Stretches of digits and separators that could hold a run: one character class, so ``re`` skips
# ordinary text quickly; the exact pattern then runs only inside them.
_STRETCH = re.compile(r"[+(]?\d[\d \t().\-/]{6,}")
_SHORT = 200  # up to this many characters, one pass of ``_RUN`` is faster than two
_NOT_DIGITS = str.maketrans("", "", " \t().-/+")
# Context the matcher reads around a candidate: whether a letter touches it, and a time's
# ":mm" after it (libphonenumber's own timestamp rule). More would only defeat the cache.
_BEFORE, _AFTER = 1, 3
_LETTERS = str.maketrans(dict.fromkeys(string.ascii_letters, "x"))
_DIGIT = re.compile(r"\d")


class _Port:
    """One implementation of libphonenumber, asked by the module's rules (see above)."""

    def __init__(self, lib: ModuleType) -> None:
        self.lib = lib
        self.possible = lib.Leniency.POSSIBLE
        self.valid = lib.Leniency.VALID
        self.is_possible = lib.ValidationResult.IS_POSSIBLE

    def _home_phone(self, match: phonenumbers.PhoneNumberMatch) -> bool:
        """A match read in the home region's plan that is a phone by the module's rules."""
        raw = match.raw_string.lstrip("(")
        if raw.startswith(("+", "00")):
            return True
        if raw.startswith("0"):  # trunk prefix: a full national number, not a local fragment
            return self.lib.is_possible_number_with_reason(match.number) == self.is_possible
        return bool(self.lib.is_valid_number(match.number))

    def spans(self, snippet: str) -> tuple[tuple[int, int], ...]:
        """Phone spans within one snippet: home-region reading first, then the others."""
        matcher = self.lib.PhoneNumberMatcher
        spans = tuple(
            (m.start, m.end)
            for m in matcher(snippet, HOME_REGION, leniency=self.possible)
            if self._home_phone(m)
        )
        if spans:
            return spans
        for region in OTHER_REGIONS:
            spans = tuple((m.start, m.end) for m in matcher(snippet, region, leniency=self.valid))
            if spans:
                return spans
        return ()


_FAST = _Port(rphonenumbers)
_REFERENCE = _Port(phonenumbers)


def _masks_every_digit(
    spans: tuple[tuple[int, int], ...], snippet: str, start: int, end: int
) -> bool:
    """Whether ``spans`` cover each digit of the run ``start:end``, with no digit beyond it.

    Then any phone the reference port could find in the snippet lies within digits already
    masked, so the fast port's answer can stand. ``spans`` are in order and do not overlap,
    as a matcher returns them.
    """
    if _DIGIT.search(snippet, 0, start) or _DIGIT.search(snippet, end):
        return False
    at = start  # every digit before ``at`` is masked; an empty range finds none
    for s, e in spans:
        if _DIGIT.search(snippet, at, min(s, end)):
            return False
        at = max(at, e)
    return not _DIGIT.search(snippet, at, end)


@functools.lru_cache(maxsize=1 << 16)
def _phones_in_snippet(snippet: str, run_start: int, run_end: int) -> tuple[tuple[int, int], ...]:
    """Phone spans within one short snippet (a run at ``run_start:run_end`` and its context).

    Cached: a customer's number recurs in every signature they send, and the matchers' parse
    is the whole cost of this module.
    """
    fast = _FAST.spans(snippet)
    if fast and _masks_every_digit(fast, snippet, run_start, run_end):
        return fast
    return _REFERENCE.spans(snippet)


def forget_seen_numbers() -> None:
    """Empty the per-process cache of matched snippets, as a new step process starts.

    A run's step runs in a fresh process, so a benchmark that lands the same export again in
    one process would otherwise measure numbers it has already parsed.
    """
    _phones_in_snippet.cache_clear()


def _phone_shaped(run: str) -> bool:
    """The run has the digits of one of the three forms (see :data:`CANDIDATE`)."""
    first = run[1] if run[0] == "(" else run[0]  # a run opens with at most one "(" or "+"
    return first in "+0" or len(run.translate(_NOT_DIGITS)) >= 10


@functools.lru_cache(maxsize=1 << 12)
def _as_context(text: str) -> str:
    """A run's neighbours as the matcher sees them: every ASCII letter reads the same.

    Cached: the neighbours are a few characters ("af" of "after"), the same in many rows.
    """
    return text.translate(_LETTERS)


def _runs(text: str) -> Iterator[re.Match[str]]:
    """Digit runs that could be phones; a long text is first cut to its stretches of digits."""
    if len(text) <= _SHORT:
        return _RUN.finditer(text)
    return (
        run
        for stretch in _STRETCH.finditer(text)
        for run in _RUN.finditer(text, stretch.start(), stretch.end())
    )


def find_phones(text: str) -> list[tuple[int, int]]:
    """Start and end of every phone number in ``text``, in order, not overlapping."""
    return _find(text, _phones_in_snippet)


#: Decides one snippet: ``(snippet, run_start, run_end) -> phone spans within it``.
Decide = Callable[[str, int, int], tuple[tuple[int, int], ...]]


def _find(text: str, decide: Decide) -> list[tuple[int, int]]:
    """The phones in ``text`` as ``decide`` reads each run's snippet (tests ask one port)."""
    spans: list[tuple[int, int]] = []
    for run in _runs(text):
        digits = run.group()
        if not _phone_shaped(digits):
            continue
        start, end = run.span()
        lo = start - _BEFORE if start > _BEFORE else 0
        # The matcher only asks whether a neighbour is a letter, so every ASCII letter reads
        # the same: a number recurs in many sentences, and the cache sees one snippet.
        snippet = _as_context(text[lo:start]) + digits + _as_context(text[end : end + _AFTER])
        before = start - lo
        for s, e in decide(snippet, before, before + len(digits)):
            if not spans or lo + s >= spans[-1][1]:
                spans.append((lo + s, lo + e))
    return spans


def mask_phones(text: str, placeholder: str = "[PHONE]") -> tuple[str, int]:
    """``text`` with each phone number replaced by ``placeholder``, and how many were."""
    spans = find_phones(text)
    for start, end in reversed(spans):
        text = text[:start] + placeholder + text[end:]
    return text, len(spans)
