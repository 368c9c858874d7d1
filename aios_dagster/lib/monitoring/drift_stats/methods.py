"""Evidently's drift methods as this package knows them: names, defaults and verdict rules.

Evidently registers each stat test under a short name (``"wasserstein"``) with a display name
(``"Wasserstein distance (normed)"``), the column types it accepts and a default threshold; each
test's own function then decides drift with its own comparison (``p <= t`` for K-S, ``p < t``
for chi-square, ``d >= t`` for the distances, ``d > t`` for energy distance). The table below is
that registry written down, so configuration can be validated and defaults resolved without
importing Evidently (which takes seconds); a test holds it equal to Evidently's registry.

Only the ``fast`` methods are computed here with numpy/scipy; every other method is handed to
Evidently's own function, so its verdict is Evidently's by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["numerical", "categorical", "text"]
Rule = Literal["<", "<=", ">", ">="]

NUM: frozenset[ColumnKind] = frozenset({"numerical"})
CAT: frozenset[ColumnKind] = frozenset({"categorical"})
BOTH: frozenset[ColumnKind] = frozenset({"numerical", "categorical"})
TEXT: frozenset[ColumnKind] = frozenset({"text"})

# Evidently's ColumnType values, which its registry and error messages use.
EVIDENTLY_KIND: dict[ColumnKind, str] = {"numerical": "num", "categorical": "cat", "text": "text"}


@dataclass(frozen=True)
class Method:
    """One Evidently stat test: how it is named, where it applies and when it says "drift"."""

    name: str
    display_name: str
    kinds: frozenset[ColumnKind]
    default_threshold: float
    drift_when: Rule
    """``score <drift_when> threshold`` means drift, exactly as the test's function compares."""
    bounded: bool
    """The threshold is a probability (p-value, confidence, ROC AUC): it must lie in (0, 1)."""
    fast: bool = False
    """Computed here with numpy/scipy rather than by Evidently's function."""

    def is_drift(self, score: float, threshold: float) -> bool:
        if self.drift_when == "<":
            return score < threshold
        if self.drift_when == "<=":
            return score <= threshold
        if self.drift_when == ">":
            return score > threshold
        return score >= threshold

    def threshold_problem(self, threshold: float) -> str | None:
        """Why ``threshold`` cannot be used with this method, or None when it can."""
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            return f"threshold must be a number, got {threshold!r}"
        if not math.isfinite(threshold) or threshold <= 0:
            return f"threshold must be a finite number above 0, got {threshold!r}"
        if self.bounded and threshold >= 1:
            return f"{self.display_name} takes a threshold in (0, 1), got {threshold!r}"
        return None


_ALL = (
    Method("anderson", "Anderson-Darling", NUM, 0.1, "<", True),
    Method("chisquare", "chi-square p_value", CAT, 0.05, "<", True, fast=True),
    Method("cramer_von_mises", "Cramer-von Mises", NUM, 0.1, "<=", True),
    Method("ed", "Energy-distance", NUM, 0.1, ">", False),
    Method("es", "Epps-Singleton", NUM, 0.05, "<", True),
    Method("fisher_exact", "Fisher's Exact test", CAT, 0.1, "<", True),
    Method("g_test", "g_test", CAT, 0.1, "<", True),
    Method("hellinger", "Hellinger distance", BOTH, 0.1, ">=", False),
    Method("jensenshannon", "Jensen-Shannon distance", BOTH, 0.1, ">=", False, fast=True),
    Method("kl_div", "Kullback-Leibler divergence", BOTH, 0.1, ">=", False),
    Method("ks", "K-S p_value", NUM, 0.05, "<=", True, fast=True),
    Method("mannw", "Mann-Whitney U-rank test", NUM, 0.05, "<", True),
    Method("empirical_mmd", "empirical_mmd", NUM, 0.1, "<", True),
    Method("psi", "PSI", BOTH, 0.1, ">=", False),
    Method("t_test", "t_test", NUM, 0.05, "<", True),
    Method("perc_text_content_drift", "Percentile text content drift", TEXT, 0.95, ">", True),
    Method("abs_text_content_drift", "Absolute text content drift", TEXT, 0.55, ">", True),
    Method("TVD", "Total-Variation-Distance", CAT, 0.1, "<", True),
    Method("wasserstein", "Wasserstein distance (normed)", NUM, 0.1, ">=", False, fast=True),
    Method("z", "Z-test p_value", CAT, 0.05, "<", True, fast=True),
)
METHODS: dict[str, Method] = {m.name: m for m in _ALL}


def default_method(kind: ColumnKind, reference_rows: int, distinct_values: int) -> Method:
    """Evidently's ``_get_default_stattest``: by column type, reference size and distinct values.

    ``distinct_values`` counts the union of both windows after NaN/inf are dropped; only whether
    it is above 5 matters for numerical columns, and whether it is above 2 for small references.
    Note that Evidently picks the Z-test (registered for categorical columns only) for numerical
    columns with one or two values, which a user could not ask for by name.
    """
    if kind == "text":
        name = "abs_text_content_drift" if reference_rows > 1000 else "perc_text_content_drift"
    elif reference_rows <= 1000:
        if kind == "numerical" and distinct_values > 5:
            name = "ks"
        else:
            name = "chisquare" if distinct_values > 2 else "z"
    elif kind == "numerical" and distinct_values > 5:
        name = "wasserstein"
    else:
        name = "jensenshannon"
    return METHODS[name]
