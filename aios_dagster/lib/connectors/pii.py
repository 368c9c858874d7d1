"""PII handling at the edge: nothing identifying reaches the lake in clear text.

Two tools, chosen per column by the connector:
- *tokenize*: keyed HMAC-SHA256, so the same customer joins across sources (the CRM e-mail and
  the mailbox sender give the same token) without the value itself being stored;
- *mask*: free text (subjects, bodies) keeps its meaning for the model but each detected e-mail
  address, card number, IBAN, phone or account number is replaced by a typed placeholder.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.phones import mask_phones_array

# Order matters: longer, more specific patterns first so a card number is not read as an account
# or a phone. Phones (libphonenumber, see ``phones``) come between the two groups: after e-mail
# addresses, IBANs and cards have gone, before the short sort-code and account patterns.
_BEFORE_PHONES: tuple[tuple[str, str], ...] = (
    ("EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    ("IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,4})?\b"),
    ("CARD", r"\b(?:\d{4}[ -]?){3}\d{4}\b"),
)
_AFTER_PHONES: tuple[tuple[str, str], ...] = (
    ("SORTCODE", r"\b\d{2}-\d{2}-\d{2}\b"),
    ("ACCOUNT", r"\b\d{8}\b"),
)


@dataclass(frozen=True)
class MaskStats:
    """How many values of each kind were masked: reported in asset metadata for audit."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def mask_array(array: pa.Array) -> tuple[pa.Array, MaskStats]:
    """Mask every detected identifier in a string array; returns it and what was replaced.

    Runs in Arrow's RE2 kernels, one detector at a time in priority order (an e-mail address
    is gone before the card or phone patterns look at its digits); phones go through
    libphonenumber for the few rows that hold a phone-shaped digit run.
    """
    counts: dict[str, int] = {}
    for name, rx in _BEFORE_PHONES:
        counts[name] = int(pc.sum(pc.count_substring_regex(array, rx)).as_py() or 0)
        array = pc.replace_substring_regex(array, rx, f"[{name}]")
    array, counts["PHONE"] = mask_phones_array(array)
    for name, rx in _AFTER_PHONES:
        counts[name] = int(pc.sum(pc.count_substring_regex(array, rx)).as_py() or 0)
        array = pc.replace_substring_regex(array, rx, f"[{name}]")
    return array, MaskStats(counts)


def mask_text(text: str) -> str:
    """Replace every detected identifier in free text by a placeholder like ``[CARD]``."""
    masked = mask_array(pa.array([text], pa.string()))[0][0].as_py()
    return str(masked)


def count_pii(text: str) -> dict[str, int]:
    """Counts of each detector's matches: used by tests and the masking report."""
    stats = mask_array(pa.array([text], pa.string()))[1]
    return {name: n for name, n in stats.counts.items() if n}


def mask_series(values: pd.Series) -> tuple[pd.Series, MaskStats]:
    """:func:`mask_array` over a pandas text column (nulls stay null, the index is kept)."""
    array = pa.array(values.where(values.notna(), None), type=pa.string(), from_pandas=True)
    masked, stats = mask_array(array)
    return pd.Series(masked.to_pylist(), index=values.index, dtype=object), stats


class PiiMasker(dg.ConfigurableResource):
    """Keyed tokenisation and free-text masking, configured once per deployment.

    The key comes from ``dg.EnvVar("AIOS_PII_KEY")`` in production; the embedded profile uses a
    fixed demo key so local data is reproducible (it protects nothing real).
    """

    hmac_key: str

    def tokenize(self, value: object) -> str | None:
        """HMAC token of a value's text (a number read from JSON tokenizes like its digits)."""
        if value is None or value == "" or (isinstance(value, float) and value != value):
            return None
        text = str(value).strip().lower()
        digest = hmac.new(self.hmac_key.encode(), text.encode(), hashlib.sha256).hexdigest()
        return f"tok_{digest[:24]}"

    def tokenize_series(self, values: pd.Series) -> pd.Series:
        """Tokens for a column, one HMAC per *distinct* value spread back by position.

        Identifiers repeat (a customer's e-mail is on each of their transactions) and a token
        depends on the value alone; nulls (``factorize``'s -1) stay exactly as they were.
        """
        codes, uniques = pd.factorize(values)
        tokens = np.array([self.tokenize(v) for v in uniques], dtype=object)
        out = values.to_numpy(dtype=object, copy=True)
        present = codes >= 0
        out[present] = tokens[codes[present]]
        return pd.Series(out, index=values.index, dtype=object)


# Words that make a display name a role or a system, not a person ("Internet Mail Delivery",
# "Customer Service Team", "Jane from Support"): they are never masked as names, or a sender
# called "Mail Delivery" would blank "delivery" out of every bounce it sends.
ROLE_WORDS = frozenset(
    {
        *("account", "accounts", "admin", "administrator", "alert", "alerts", "auto"),
        *("automated", "bank", "billing", "bot", "care", "centre", "center", "client"),
        *("contact", "customer", "customers", "daemon", "delivery", "department", "desk"),
        *("digest", "do", "donotreply", "enquiries", "feedback", "help", "helpdesk", "info"),
        *("information", "internet", "mail", "mailer", "mailbox", "marketing", "news"),
        *("newsletter", "no", "noreply", "not", "notification", "notifications", "notify"),
        *("office", "online", "operations", "postmaster", "reply", "robot", "sales"),
        *("security", "server", "service", "services", "subsystem", "support", "system"),
        *("team", "update", "updates"),
    }
)
# Forms of address say nothing about who someone is, and "Mr" is in every other letter.
TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "sir", "madam", "prof"})
_NOT_NAMES = ROLE_WORDS | TITLES
_NAME_WORD = re.compile(r"[^\W\d_]{2,}")


def person_name_words(display_name: str) -> tuple[str, ...]:
    """The words of a display name that identify a person (longest first).

    Role and system words and titles are left out, and so are lower-case words of a
    capitalised name ("from", "via", "van"): people write their own names capitalised, so in
    "Jane from Support" only "Jane" is a name. A name written all in lower case is taken whole.
    """
    name = re.sub(r"\S+@\S+", " ", display_name)  # an address used as a display name
    words = [w for w in _NAME_WORD.findall(name) if w.lower() not in _NOT_NAMES]
    if any(w[0].isupper() for w in words):
        words = [w for w in words if w[0].isupper()]
    return tuple(sorted(set(words), key=lambda w: (-len(w), w)))


@functools.lru_cache(maxsize=1 << 14)
def _name_pattern(display_name: str) -> re.Pattern[str] | None:
    """Where the sender's name words occur in text *as names*.

    A capitalised name matches where the text capitalises it too ("Hill", "HILL", never "hill"):
    a surname that is also a word ("Hill", "May", "Rose") is masked in a signature but left in
    "up the hill". A sender who writes their name in lower case is matched in any case.
    Cached per display name: a sender writes many messages.
    """
    words = person_name_words(display_name)
    if not words:
        return None
    parts = [
        f"{re.escape(w[0])}(?i:{re.escape(w[1:])})" if w[0].isupper() else f"(?i:{re.escape(w)})"
        for w in words
    ]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b")


def mask_names(texts: pd.Series, names: pd.Series) -> tuple[pd.Series, int]:
    """Replace each row's known person name (e.g. the sender's display name) by ``[NAME]``.

    Regex detectors cannot recognise names in free text; the sender's own name is the one we
    know and the one people sign with, so each of its person-name words (see
    :func:`person_name_words`) is masked in that row.
    """
    masked: list[str | None] = []
    total = 0
    for text, name in zip(texts.tolist(), names.tolist(), strict=True):
        pattern = _name_pattern(str(name)) if text is not None and name else None
        if pattern is None:
            masked.append(text)
            continue
        new, n = pattern.subn("[NAME]", text)
        masked.append(new)
        total += n
    return pd.Series(masked, index=texts.index, dtype=object), total


# A sign-off line ("Kind regards,") followed by a short line is a signature: the next line is
# a name whether or not we know it. This catches names in mail whose sender name is unknown
# (no or a malformed From header), which ``mask_names`` cannot.
_SIGNOFF = re.compile(
    r"(?im)^(?P<signoff>(?:best|kind|warm|many|thanks|thank you|regards|cheers|sincerely|yours"
    r"|all the best)[^\n]{0,20}?,?[ \t]*)"
    r"\n(?P<name>[^\W\d_][^\n\[\]]{1,59})$"
)


def mask_signoff_names(texts: pd.Series) -> tuple[pd.Series, int]:
    """Replace the line after a sign-off ("Best wishes,") by ``[NAME]``; count replacements."""
    total = 0

    def one(text: object) -> object:
        nonlocal total
        if not isinstance(text, str):
            return text
        new, n = _SIGNOFF.subn(lambda m: f"{m['signoff']}\n[NAME]", text)
        total += n
        return new

    masked = texts.map(one)
    return masked, total
