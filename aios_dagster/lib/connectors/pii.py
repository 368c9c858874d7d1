"""PII handling at the edge: nothing identifying reaches the lake in clear text.

Two tools, chosen per column by the connector:
- *tokenize*: keyed HMAC-SHA256, so the same customer joins across sources (the CRM e-mail and
  the mailbox sender give the same token) without the value itself being stored;
- *mask*: free text (subjects, bodies) keeps its meaning for the model but each detected e-mail
  address, card number, IBAN, phone or account number is replaced by a typed placeholder.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Order matters: longer, more specific patterns first so a card number is not read as an account.
_DETECTORS: tuple[tuple[str, str], ...] = (
    ("EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    ("IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,4})?\b"),
    ("CARD", r"\b(?:\d{4}[ -]?){3}\d{4}\b"),
    ("PHONE", r"(?:\+44\s?|\b0)7\d{3}\s?\d{6}\b|(?:\+44\s?|\b0)\d{2,4}\s?\d{3,4}\s?\d{3,4}\b"),
    ("SORTCODE", r"\b\d{2}-\d{2}-\d{2}\b"),
    ("ACCOUNT", r"\b\d{8}\b"),
)
_COMBINED = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _DETECTORS))
_COMPILED = tuple((name, re.compile(rx)) for name, rx in _DETECTORS)


@dataclass(frozen=True)
class MaskStats:
    """How many values of each kind were masked: reported in asset metadata for audit."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def mask_text(text: str) -> str:
    """Replace every detected identifier in free text by a placeholder like ``[CARD]``.

    Detectors apply one after another in priority order, exactly as :func:`mask_series` does.
    """
    for name, rx in _COMPILED:
        text = rx.sub(f"[{name}]", text)
    return text


def count_pii(text: str) -> dict[str, int]:
    """Counts of each detector's matches: used by tests and the masking report."""
    counts: dict[str, int] = {}
    for m in _COMBINED.finditer(text):
        counts[m.lastgroup or "?"] = counts.get(m.lastgroup or "?", 0) + 1
    return counts


def mask_series(values: pd.Series) -> tuple[pd.Series, MaskStats]:
    """Vectorised mask over a text column, returning the masked column and what it replaced.

    Runs in Arrow's RE2 kernels, one detector at a time in priority order (an e-mail address
    is gone before the card or phone patterns look at its digits): about 9x faster than one
    Python regex pass with a callback, which made masking most of a connector's cost.
    """
    array = pa.array(values.where(values.notna(), None), type=pa.string(), from_pandas=True)
    counts: dict[str, int] = {}
    for name, rx in _DETECTORS:
        counts[name] = int(pc.sum(pc.count_substring_regex(array, rx)).as_py() or 0)
        array = pc.replace_substring_regex(array, rx, f"[{name}]")
    masked = pd.Series(array.to_pylist(), index=values.index, dtype=object)
    return masked, MaskStats(counts)


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


def mask_names(texts: pd.Series, names: pd.Series) -> tuple[pd.Series, int]:
    """Replace each row's known person name (e.g. the sender's display name) by ``[NAME]``.

    Regex detectors cannot recognise names in free text; the sender's own name is the one we
    know and the one people sign with, so each of its words (2+ letters) is masked in that row.
    """
    masked: list[str | None] = []
    total = 0
    for text, name in zip(texts.tolist(), names.tolist(), strict=True):
        if text is None or not name:
            masked.append(text)
            continue
        words = sorted({w for w in re.findall(r"[^\W\d_]{2,}", str(name))}, key=len, reverse=True)
        if not words:
            masked.append(text)
            continue
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
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
