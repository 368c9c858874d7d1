"""The pandas fast path: the simple contract rules evaluated exactly as GE would.

GE 1.24 validating a pandas frame spends most of its time on work a contract run never reads: it
fingerprints the whole frame when loading the batch (``pd.util.hash_pandas_object``, ~0.7 s per
million rows; ``Batch.validate`` loads and hashes it a second time) and copies the frame for
every metric that drops nulls or picks unexpected rows. So the simple rule types that make up
nearly all of our contracts (``_FAST_RULES`` and the column set: not-null, null, unique, in-set,
regex) are evaluated here with the same pandas calls GE's own pandas metrics make, on the same
null-filtered values, with GE's ``mostly`` arithmetic. Anything else returns None and goes to GE
(see ``contracts.runner``). The unit tests hold the two evaluators to the same verdict, count,
rows and quarantine text, rule by rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

PANDAS = "pandas"


@dataclass(frozen=True)
class Verdict:
    """One rule's verdict, from either evaluator; ``index`` holds failing row positions."""

    success: bool
    unexpected_count: int
    row_level: bool
    index: np.ndarray | None
    engine: str


def mostly_success(considered: int, unexpected: int, mostly: float) -> bool:
    """GE's ``mostly_success``, float for float, so borderline ``mostly`` agrees exactly."""
    return (float(considered) - float(unexpected)) / float(considered) >= mostly


def _meets_not_null(values: pd.Series, kwargs: Mapping[str, Any]) -> np.ndarray:
    return values.notna().to_numpy()


def _meets_null(values: pd.Series, kwargs: Mapping[str, Any]) -> np.ndarray:
    return values.isna().to_numpy()


def _meets_unique(values: pd.Series, kwargs: Mapping[str, Any]) -> np.ndarray:
    if values.is_unique:  # the usual id column: one counting pass instead of a row mask
        return np.ones(len(values), dtype=bool)
    return ~values.duplicated(keep=False).to_numpy()


def _meets_in_set(values: pd.Series, kwargs: Mapping[str, Any]) -> np.ndarray:
    value_set = kwargs["value_set"]
    if value_set is None:  # GE: vacuously true
        return np.ones(len(values), dtype=bool)
    return values.isin(value_set).to_numpy()


def _meets_regex(values: pd.Series, kwargs: Mapping[str, Any]) -> np.ndarray:
    return values.astype(str).str.contains(kwargs["regex"]).to_numpy(dtype=bool)


@dataclass(frozen=True)
class _FastRule:
    """A column rule the fast path evaluates: GE's pandas condition and how GE counts it.

    ``filter_nulls`` mirrors the metric's ``filter_column_isnull``: nulls are neither checked nor
    counted, and ``mostly`` is a fraction of the non-null rows. The null rules count every row.
    """

    meets: Callable[[pd.Series, Mapping[str, Any]], np.ndarray]
    filter_nulls: bool
    extra_kwargs: frozenset[str] = frozenset()


_FAST_RULES: dict[str, _FastRule] = {
    "expect_column_values_to_not_be_null": _FastRule(_meets_not_null, filter_nulls=False),
    "expect_column_values_to_be_null": _FastRule(_meets_null, filter_nulls=False),
    "expect_column_values_to_be_unique": _FastRule(_meets_unique, filter_nulls=True),
    "expect_column_values_to_be_in_set": _FastRule(
        _meets_in_set, filter_nulls=True, extra_kwargs=frozenset({"value_set"})
    ),
    "expect_column_values_to_match_regex": _FastRule(
        _meets_regex, filter_nulls=True, extra_kwargs=frozenset({"regex"})
    ),
}
_COLUMN_SET = "expect_table_columns_to_match_set"
_SCALARS = (str, int, float, bool)


def _fast_column_set(frame: pd.DataFrame, expectation: Expectation) -> Verdict | None:
    """GE's pandas ``_validate`` for the column set: exact match, or nothing expected missing."""
    if set(expectation.configuration.kwargs) - {"column_set", "exact_match"}:
        return None
    column_set = expectation.configuration.kwargs.get("column_set")
    exact = getattr(expectation, "exact_match", None)  # GE's default when the file omits it
    if not isinstance(column_set, list | tuple | set) or not isinstance(exact, bool | None):
        return None  # a suite parameter
    if not all(isinstance(c, str) for c in column_set):
        return None
    expected, actual = set(column_set), set(frame.columns)
    success = expected == actual or (not exact and expected <= actual)
    return Verdict(success, int(not success), False, None, PANDAS)


def fast_evaluate(frame: pd.DataFrame, expectation: Expectation) -> Verdict | None:
    """The rule's verdict by the fast path, or None where only GE can say it exactly.

    Works from the kwargs the contract states (so an option the fast path does not model sends
    the rule to GE) and GE's parsed expectation for defaults such as ``mostly``.
    """
    config = expectation.configuration
    kwargs = config.kwargs
    if config.type == _COLUMN_SET:
        return _fast_column_set(frame, expectation)
    rule = _FAST_RULES.get(config.type)
    if rule is None or set(kwargs) - {"column", "mostly", *rule.extra_kwargs}:
        return None
    column, mostly = kwargs["column"], getattr(expectation, "mostly", 1.0)
    if not isinstance(column, str) or column not in frame.columns:
        return None  # GE reports a missing column as a raised exception: let it
    if not isinstance(mostly, int | float) or isinstance(mostly, bool):
        return None  # a suite parameter
    value_set = kwargs.get("value_set")
    if value_set is not None and (
        not isinstance(value_set, list | tuple | set)
        or not all(isinstance(v, _SCALARS) for v in value_set)
    ):
        return None
    if "regex" in rule.extra_kwargs and not isinstance(kwargs.get("regex"), str):
        return None
    series = frame[column]
    rows = len(series)
    try:
        if rule.filter_nulls:
            notnull = series.notna().to_numpy()
            considered = int(np.count_nonzero(notnull))
            kept = series if considered == rows else series[notnull]
            unexpected = np.zeros(rows, dtype=bool)
            unexpected[notnull] = ~rule.meets(kept, kwargs)
        else:
            considered = rows
            unexpected = ~rule.meets(series, kwargs)
    except (TypeError, ValueError, re.error):
        return None  # unhashable or odd values: GE reports it its own way
    count = int(np.count_nonzero(unexpected))
    success = considered == 0 or mostly_success(considered, count, float(mostly))
    return Verdict(success, count, True, np.flatnonzero(unexpected), PANDAS)
