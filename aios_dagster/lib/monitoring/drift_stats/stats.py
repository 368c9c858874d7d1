"""The five stat tests Evidently picks by default, computed once per column from arrays.

Each function returns the score Evidently's own function returns for the same data, by the same
formula and, where it matters, the same scipy call; none samples or bins where Evidently does
not, so there is nothing approximate to fall back from. What differs is the work around them:
Evidently hands each test a pandas Series and recounts distinct values, unique values and value
counts per call; here counts are taken once and the Wasserstein distance merges two sorted
arrays instead of sorting and binary-searching their union.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial import distance

from aios_dagster.lib.monitoring.drift_stats.columns import NumericSide


def wasserstein_normed(reference: NumericSide, current: NumericSide) -> float:
    """Evidently's "Wasserstein distance (normed)": W1 over max(std(reference), 0.001)."""
    norm = max(reference.std(), 0.001)
    return wasserstein_distance(reference.values, current.values) / norm


def wasserstein_distance(u: np.ndarray, v: np.ndarray) -> float:
    """``scipy.stats.wasserstein_distance(u, v)``, bit for bit, in one merge instead of searches.

    scipy sums ``|F_u - F_v| * delta`` over the sorted union, reading each CDF with a binary
    search per point. Sorting both samples and stably merging them (timsort merges two sorted
    runs in linear time) gives the same CDF counts wherever a delta is non-zero; where values
    tie the delta is zero and so is the term, whichever count is used. The terms, and numpy's
    pairwise sum over them in the same order, are therefore identical.
    """
    u_sorted = np.sort(np.asarray(u, dtype=np.float64))
    v_sorted = np.sort(np.asarray(v, dtype=np.float64))
    merged = np.concatenate((u_sorted, v_sorted))
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    u_count = np.cumsum(order[:-1] < u_sorted.size)
    v_count = np.arange(1, values.size, dtype=np.int64) - u_count
    u_cdf = u_count / u_sorted.size
    v_cdf = v_count / v_sorted.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(values)))


def jensenshannon_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Evidently's "Jensen-Shannon distance" over value shares (natural log, no zero filling)."""
    reference_share = reference_counts / reference_counts.sum()
    current_share = current_counts / current_counts.sum()
    return float(distance.jensenshannon(reference_share, current_share))


def jensenshannon_numeric(reference: np.ndarray, current: np.ndarray) -> float:
    """The same distance for a numerical column with over 20 reference values: Sturges bins.

    Evidently bins such a column (only reachable by asking for ``jensenshannon`` by name) on
    edges from the union of both windows; this is that computation on the cleaned arrays.
    """
    edges = np.histogram_bin_edges(np.concatenate((reference, current)), bins="sturges")
    reference_share = np.histogram(reference, edges)[0] / len(reference)
    current_share = np.histogram(current, edges)[0] / len(current)
    return float(distance.jensenshannon(reference_share, current_share))


def ks_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's "K-S p_value": scipy's two-sided two-sample test, as Evidently calls it."""
    return float(stats.ks_2samp(reference, current)[1])


def chisquare_p_value(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Evidently's "chi-square p_value": current counts against reference shares scaled up."""
    scale = current_counts.sum() / reference_counts.sum()
    expected = [count * scale for count in reference_counts.tolist()]
    observed = current_counts.tolist()
    return float(stats.chisquare(observed, expected)[1])


def z_p_value(
    keys: list[object], reference_counts: np.ndarray, current_counts: np.ndarray
) -> float:
    """Evidently's "Z-test p_value": two proportions, of rows other than the smallest value.

    Evidently compares the share of rows not equal to ``sorted(values)[0]``; one identical value
    on both sides is no drift (p = 1) rather than the 0/0 the formula would give.
    """
    ref_rows, cur_rows = int(reference_counts.sum()), int(current_counts.sum())
    ref_present, cur_present = reference_counts > 0, current_counts > 0
    if ref_present.sum() == 1 and cur_present.sum() == 1 and (ref_present == cur_present).all():
        return 1.0
    first = keys.index(sorted(keys)[0])
    p1 = float(ref_rows - int(reference_counts[first])) / ref_rows
    p2 = float(cur_rows - int(current_counts[first])) / cur_rows
    pooled = float(p1 * ref_rows + p2 * cur_rows) / (ref_rows + cur_rows)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / ref_rows + 1.0 / cur_rows))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))
