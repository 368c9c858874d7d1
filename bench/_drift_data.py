"""The drift benchmark's data: a reference and a current window, 15 numeric + 5 categorical.

Deterministic (one seed), so every run times the same work and the committed figures can be
reproduced. Some columns drift, most do not, and two sit a millionth either side of the default
Wasserstein threshold (the current is the reference shifted by 0.1 std times 1 -/+ 1e-6, so the
normed distance is that factor times 0.1): the columns where a cheaper, approximate computation
would flip a verdict. Column types are chosen so Evidently types them as the name says
(``c_tier`` is an int with five values, which Evidently counts as categorical).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED = 20261201
CITIES = np.array([f"city_{i:02d}" for i in range(20)], dtype=object)
CHANNELS = np.array(["web", "app", "branch", "phone"], dtype=object)
SEGMENTS = ["retail", "sme", "corporate", "private", "public", "other"]
NEAR_FACTORS = {"n_near_below": 1 - 1e-6, "n_near_above": 1 + 1e-6}
# Planted on purpose; everything else is drawn from one distribution for both windows.
DRIFTED = ("n_shift", "n_scale", "n_big_shift", "n_amount", "n_near_above", "c_city", "c_tier")


def _city_weights(drifted: bool) -> np.ndarray:
    weights = np.linspace(2.0, 1.0, len(CITIES)) if drifted else np.linspace(1.0, 2.0, len(CITIES))
    return weights / weights.sum()


def _window(rows: int, rng: np.random.Generator, drifted: bool) -> dict[str, object]:
    nan_column = rng.normal(10, 2, rows)
    nan_column[rng.random(rows) < 0.05] = np.nan
    return {
        "n_same_0": rng.normal(0, 1, rows),
        "n_same_1": rng.normal(5, 3, rows),
        "n_same_2": rng.normal(-2, 0.5, rows),
        "n_same_3": rng.uniform(0, 1, rows),
        "n_same_4": rng.exponential(2, rows),
        "n_shift": rng.normal(0.3 if drifted else 0.0, 1, rows),
        "n_scale": rng.normal(0, 1.3 if drifted else 1.0, rows),
        "n_big_shift": rng.normal(0.5 if drifted else 0.0, 1, rows),
        "n_lognormal": rng.lognormal(0, 1, rows),
        "n_nan": nan_column,
        "n_age": rng.integers(18, 90, rows),
        "n_amount": rng.integers(0, 1_200_000 if drifted else 1_000_000, rows),
        "n_rating": rng.integers(1, 6, rows).astype(float),  # numeric, 5 values: Jensen-Shannon
        "c_city": rng.choice(CITIES, rows, p=_city_weights(drifted)),
        "c_channel": rng.choice(CHANNELS, rows),
        "c_flag": rng.random(rows) < 0.3,
        "c_tier": rng.choice(5, rows, p=[0.3, 0.3, 0.2, 0.1, 0.1] if drifted else None),
        "c_segment": pd.Categorical(rng.choice(SEGMENTS, rows), categories=SEGMENTS),
    }


def make_windows(rows: int, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current, ``rows`` each, with the columns in a fixed order."""
    rng = np.random.default_rng(seed)
    reference, current = _window(rows, rng, False), _window(rows, rng, True)
    near_base = rng.normal(0, 1, rows)
    std = float(pd.Series(near_base).std(ddof=0))
    for name, factor in NEAR_FACTORS.items():
        reference[name] = near_base
        current[name] = near_base + 0.1 * std * factor
    order = [*(k for k in reference if k.startswith("n_")), *(k for k in reference if k[0] == "c")]
    return pd.DataFrame(reference)[order], pd.DataFrame(current)[order]
