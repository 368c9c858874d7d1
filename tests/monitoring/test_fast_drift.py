"""fast_drift must decide every column exactly as plain Evidently does, on the same data.

Each case runs the real ``Report([DataDriftPreset(...)])`` and ``compute_drift`` with the same
settings on generated frames (small references pick K-S/chi-square/Z, large ones Wasserstein/
Jensen-Shannon), then compares column order, method, threshold, score and verdict, and the
``DriftedColumnsCount`` count. Scores sitting right next to their thresholds, on either side and
on them exactly, are built on purpose: that is where a cheaper computation would flip a verdict.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from aios_dagster.lib.monitoring.drift_stats.columns import infer_kind
from aios_dagster.lib.monitoring.drift_stats.stats import wasserstein_distance
from aios_dagster.lib.monitoring.fast_drift import (
    METHODS,
    DriftConfigError,
    DriftResult,
    compute_drift,
)

_METHOD_IN_TEST = re.compile(r"The drift detection method is (?P<method>.+)\. The drift threshold")
_WORDS = np.array(
    ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa", "mu", "nu"]
)


@dataclass(frozen=True)
class Plain:
    """Plain Evidently's outcome: per column (in report order) and its drifted-columns count."""

    columns: dict[str, tuple[str, float, float, bool]]  # method, threshold, score, drifted
    count: int
    share: float


def plain_evidently(reference: pd.DataFrame, current: pd.DataFrame, **preset: Any) -> Plain:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(**preset)], include_tests=True).run(
            current_data=current, reference_data=reference
        )
    data = snapshot.dict()
    verdicts: dict[str, tuple[str, bool]] = {}
    for test in data["tests"]:
        name = str(test["name"])
        if name.startswith("Value Drift for column "):
            method = _METHOD_IN_TEST.search(test["description"])
            assert method is not None, test["description"]
            drifted = str(test["status"]).endswith("FAIL")
            verdicts[name.removeprefix("Value Drift for column ")] = (method["method"], drifted)
    columns, count, share = {}, -1, -1.0
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            method, drifted = verdicts[config["column"]]
            score = float(metric["value"])
            columns[config["column"]] = (method, float(config["threshold"]), score, drifted)
    return Plain(columns, count, share)


def assert_agrees(ours: DriftResult, plain: Plain) -> None:
    assert [c.column for c in ours.columns] == list(plain.columns)
    for c in ours.columns:
        method, threshold, score, drifted = plain.columns[c.column]
        assert (c.column, c.method, c.threshold, c.drifted) == (
            c.column,
            method,
            threshold,
            drifted,
        )
        assert c.score == pytest.approx(score, rel=1e-9, abs=1e-300), c
    assert (ours.drifted_columns, ours.share) == (plain.count, pytest.approx(plain.share))


def _sentences(rng: np.random.Generator, rows: int, words: np.ndarray) -> np.ndarray:
    return np.array([" ".join(rng.choice(words, 6)) for _ in range(rows)], dtype=object)


def _frames(rows_ref: int, rows_cur: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every column type and quirk Evidently types and tests differently, some drifted."""
    rng = np.random.default_rng(seed)

    def frame(rows: int, shifted: bool) -> pd.DataFrame:
        shift = 0.4 if shifted else 0.0
        letters = np.array(list("abcd") + (["e"] if shifted else []), dtype=object)
        nan_col = rng.normal(size=rows)
        nan_col[rng.random(rows) < 0.1] = np.nan
        return pd.DataFrame(
            {
                "f_same": rng.normal(size=rows),
                "f_shift": rng.normal(size=rows) + shift,
                "f_nan": nan_col,
                "f32": rng.normal(size=rows).astype(np.float32) + np.float32(shift / 2),
                "i_many": rng.integers(0, 60, rows),
                "i_few": rng.integers(0, 4 if not shifted else 3, rows),
                "i_two": rng.integers(0, 2, rows),
                "f_four": rng.integers(1, 5, rows).astype(float),
                "f_two": rng.integers(0, 2, rows).astype(float),
                "f_const": np.ones(rows),
                "f_const_moves": np.full(rows, 2.0 if shifted else 1.0),
                "s_cat": rng.choice(letters, rows),
                "s_two": rng.choice(np.array(["yes", "no"], dtype=object), rows),
                "b": rng.random(rows) < (0.5 if shifted else 0.3),
                "cat": pd.Categorical(rng.choice(["lo", "mid", "hi"], rows)),
                "text": _sentences(rng, rows, _WORDS[: 12 if shifted else 8]),
                "when": pd.date_range("2026-01-01", periods=rows, freq="min"),
                "u8": rng.integers(0, 200, rows).astype(np.uint8),
                "obj_num": pd.Series(rng.integers(0, 5, rows), dtype=object),
            }
        )

    return frame(rows_ref, False), frame(rows_cur, True)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    # Small references test text with a 1000-fold bootstrap (seconds per run): text is left to
    # the large frame, where Evidently's one-shot classifier decides it.
    return tuple(f.drop(columns="text") for f in _frames(400, 300, seed=1))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def large() -> tuple[pd.DataFrame, pd.DataFrame]:
    reference, current = _frames(2000, 2000, seed=2)
    # Pure shifts of the reference: the normed Wasserstein distance is the shift over the std,
    # here a millionth below and above the default threshold of 0.1.
    base = reference["f_same"].to_numpy()
    std = float(np.std(reference["f_same"]))
    for name, factor in (("w_just_below", 1 - 1e-6), ("w_just_above", 1 + 1e-6)):
        reference[name] = base
        current[name] = base + 0.1 * std * factor
    # The reference constant, the current not: Evidently norms by 0.001 instead of std 0.
    reference["f_const_ref"] = 3.0
    current["f_const_ref"] = 3.0 + np.random.default_rng(3).normal(scale=1e-4, size=2000)
    return reference, current


def test_small_reference_defaults_agree(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = small
    ours = compute_drift(reference, current)
    assert_agrees(ours, plain_evidently(reference, current))
    methods = {c.column: c.method_id for c in ours.columns}
    assert methods["f_same"] == "ks" and methods["i_few"] == "chisquare"
    assert methods["f_two"] == methods["b"] == methods["f_const"] == "z"
    assert {"when", "u8", "obj_num"}.isdisjoint(methods)


def test_large_reference_defaults_agree(large: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = large
    ours = compute_drift(reference, current)
    assert_agrees(ours, plain_evidently(reference, current))
    by_name = {c.column: c for c in ours.columns}
    assert by_name["f_same"].method_id == "wasserstein"
    assert by_name["f_four"].method_id == by_name["s_cat"].method_id == "jensenshannon"
    assert not by_name["w_just_below"].drifted and by_name["w_just_above"].drifted
    assert by_name["w_just_above"].engine == "numpy"  # decided here, not handed back
    assert by_name["text"].engine == "evidently"  # text drift is Evidently's own classifier


def test_overrides_agree(large: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = large
    settings: dict[str, Any] = {
        "num_method": "ks",
        "per_column_method": {
            "f_shift": "psi",
            "i_many": "jensenshannon",  # numerical with over 20 values: Sturges bins
            "f_nan": "kl_div",
            "f_four": "jensenshannon",
            "s_cat": "chisquare",
            "b": "z",
            "i_few": "hellinger",
        },
        "cat_threshold": 0.2,
        "per_column_threshold": {"f_same": 0.5, "s_cat": 0.01, "f_shift": 0.05},
        "drift_share": 0.3,
    }
    ours = compute_drift(reference, current, **settings)
    assert_agrees(ours, plain_evidently(reference, current, **settings))
    assert ours.column("f_shift").engine == "evidently" and ours.column("f_same").method_id == "ks"
    assert ours.dataset_drift == (ours.share >= 0.3)


def test_chosen_columns_agree(large: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = large
    settings: dict[str, Any] = {"columns": ["s_cat", "f_same", "i_few"], "drift_share": 0.6}
    ours = compute_drift(reference, current, **settings)
    assert_agrees(ours, plain_evidently(reference, current, **settings))
    assert [c.column for c in ours.columns] == settings["columns"]  # the order asked for


def test_thresholds_on_and_beside_the_score_agree() -> None:
    """Per method, thresholds a millionth below, exactly at and a millionth above the score."""
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(5)
    rows = 1500
    base = {
        "ks": (rng.normal(size=rows), rng.normal(size=rows) + 0.08, ColumnType.Numerical),
        "wasserstein": (rng.normal(size=rows), rng.normal(size=rows) + 0.1, ColumnType.Numerical),
        "jensenshannon": (
            rng.choice(np.array(list("abc"), dtype=object), rows, p=[0.5, 0.3, 0.2]),
            rng.choice(np.array(list("abc"), dtype=object), rows, p=[0.4, 0.35, 0.25]),
            ColumnType.Categorical,
        ),
        "chisquare": (
            rng.choice(np.array(list("abc"), dtype=object), rows),
            rng.choice(np.array(list("abc"), dtype=object), rows, p=[0.36, 0.33, 0.31]),
            ColumnType.Categorical,
        ),
        "z": (rng.random(rows) < 0.3, rng.random(rows) < 0.33, ColumnType.Categorical),
    }
    reference, current = pd.DataFrame(), pd.DataFrame()
    methods, thresholds = {}, {}
    for method, (ref, cur, column_type) in base.items():
        score = get_registered_stattest(method, column_type)(
            pd.Series(ref), pd.Series(cur), column_type, None
        ).drift_score
        for suffix, factor in (("lo", 1 - 1e-6), ("eq", 1.0), ("hi", 1 + 1e-6)):
            name = f"{method}_{suffix}"
            reference[name], current[name] = ref, cur
            methods[name], thresholds[name] = method, float(score) * factor
    settings = {"per_column_method": methods, "per_column_threshold": thresholds}
    ours = compute_drift(reference, current, **settings)
    assert_agrees(ours, plain_evidently(reference, current, **settings))
    for c in ours.columns:
        on_it = c.column.endswith("_eq")
        assert c.near_threshold == on_it and c.engine == ("evidently" if on_it else "numpy"), c
    for method in base:  # a millionth either side of the score must give opposite verdicts
        assert ours.column(f"{method}_lo").drifted != ours.column(f"{method}_hi").drifted


def test_infinities_are_counted_as_evidently_counts_them() -> None:
    """ValueDrift drops inf; DriftedColumnsCount keeps it in a window without NaN."""
    rng = np.random.default_rng(7)
    rows = 2000
    inf_ref = rng.normal(size=rows)
    inf_ref[10] = np.inf
    inf_nan = rng.normal(size=rows)
    inf_nan[[3, 4]] = [np.inf, np.nan]
    reference = pd.DataFrame({"inf_only": inf_ref, "inf_and_nan": inf_nan, "same": inf_ref})
    current = pd.DataFrame(
        {
            "inf_only": rng.normal(size=rows) + 0.3,
            "inf_and_nan": rng.normal(size=rows) + 0.3,
            "same": rng.normal(size=rows),
        }
    )
    ours = compute_drift(reference, current)
    plain = plain_evidently(reference, current)
    assert_agrees(ours, plain)
    assert ours.column("inf_only").drifted and not ours.column("inf_only").counted
    assert ours.column("inf_and_nan").counted


def test_pyarrow_tables_give_the_pandas_verdicts(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = (f.drop(columns="obj_num") for f in small)
    from_pandas = compute_drift(reference, current)
    from_arrow = compute_drift(pa.Table.from_pandas(reference), pa.Table.from_pandas(current))
    assert from_arrow == from_pandas


def test_wasserstein_is_scipys_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    for u, v in (
        (rng.normal(size=5000), rng.normal(size=3000) + 0.2),
        (rng.integers(0, 7, 4000).astype(float), rng.integers(0, 9, 2500).astype(float)),
        (np.array([1.0]), np.array([1.0, 1.0, 2.0])),
    ):
        assert wasserstein_distance(u, v) == scipy_stats.wasserstein_distance(u, v)


def test_method_table_is_evidentlys_registry() -> None:
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    registry = {name: next(iter(tests.values())) for name, tests in _registered_stat_tests.items()}
    assert set(registry) == set(METHODS)
    kind = {"num": "numerical", "cat": "categorical", "text": "text"}
    for name, test in registry.items():
        ours = METHODS[name]
        assert (ours.display_name, ours.default_threshold) == (
            test.display_name,
            test.default_threshold,
        )
        assert ours.kinds == {kind[t.value] for t in test.allowed_feature_types}


def test_column_typing_is_evidentlys() -> None:
    from evidently.core.datasets import infer_column_type

    rng = np.random.default_rng(13)
    rows = 200
    cases = [
        pd.Series(rng.normal(size=rows)),
        pd.Series(rng.normal(size=rows).astype(np.float32)),
        pd.Series(rng.integers(0, 10, rows)),
        pd.Series(rng.integers(0, 11, rows)),
        pd.Series(rng.integers(0, 11, rows).astype(np.uint8)),
        pd.Series(rng.integers(0, 3, rows), dtype="Int64"),
        pd.Series(rng.choice(["a", "b", None], rows)),
        pd.Series(_sentences(rng, rows, _WORDS)),
        pd.Series(_sentences(rng, rows, _WORDS), dtype="string"),
        pd.Series(rng.choice(["a", "b"], rows), dtype="string"),
        pd.Series([None, "a", 1] * 10, dtype=object),
        pd.Series([None] * 5, dtype=object),
        pd.Series(rng.random(rows) < 0.5),
        pd.Series(pd.Categorical(rng.choice(["x", "y"], rows))),
        pd.Series(pd.date_range("2026-01-01", periods=rows)),
        pd.Series([[1, 2], [3]] * (rows // 2)),
    ]
    kind = {"num": "numerical", "cat": "categorical", "text": "text"}
    for series in cases:
        assert infer_kind(series) == kind.get(infer_column_type(series).value), series.dtype
    with_lists = pd.DataFrame({"x": rng.normal(size=rows), "lists": cases[-1]})
    assert [c.column for c in compute_drift(with_lists, with_lists).columns] == ["x"]


def test_an_empty_column_fails_as_in_evidently() -> None:
    reference = pd.DataFrame({"a": [np.nan] * 5, "b": [1.0, 2, 3, 4, 5]})
    with pytest.raises(ValueError, match=r"empty column 'a'.*reference"):
        compute_drift(reference, reference)


@pytest.mark.parametrize(
    ("settings", "field", "column"),
    [
        ({"per_column_method": {"nope": "ks"}}, "per_column_method", "nope"),
        ({"per_column_threshold": {"nope": 0.1}}, "per_column_threshold", "nope"),
        ({"per_column_method": {"x": "kss"}}, "per_column_method", "x"),
        ({"per_column_method": {"s": "ks"}}, "per_column_method", "s"),
        ({"per_column_method": {"x": "chisquare"}}, "per_column_method", "x"),
        ({"per_column_threshold": {"x": -1.0}}, "per_column_threshold", "x"),
        ({"per_column_threshold": {"x": "0.1"}}, "per_column_threshold", "x"),
        ({"per_column_method": {"x": "ks"}, "threshold": 1.5}, "threshold", "x"),
        ({"num_method": "nope"}, "num_method", None),
        ({"drift_share": 0.0}, "drift_share", None),
        ({"drift_share": 1.5}, "drift_share", None),
        ({"columns": ["x", "missing"]}, "columns", "missing"),
        ({"columns": ["when"]}, "columns", "when"),
        ({"num_treshold": 0.2}, "num_treshold", None),  # a misspelt setting is not ignored
    ],
)
def test_bad_config_names_field_and_column(
    settings: dict[str, Any], field: str, column: str | None
) -> None:
    rng = np.random.default_rng(17)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=50),
            "s": rng.choice(np.array(["a", "b"], dtype=object), 50),
            "when": pd.date_range("2026-01-01", periods=50),
        }
    )
    with pytest.raises(DriftConfigError) as raised:
        compute_drift(frame, frame, **settings)
    assert (raised.value.field, raised.value.column) == (field, column)
    assert field in str(raised.value) and (column is None or repr(column) in str(raised.value))
