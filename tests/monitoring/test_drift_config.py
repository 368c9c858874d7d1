"""A model's ``drift:`` settings: validated when the catalog loads, windows anchored on the day.

Evidently silently ignores a per-column method for a column it does not analyse and accepts any
threshold (evidently#678); here each is an error naming the model file and the field.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.lib.monitoring.drift_config import MonitoringConfig, MonitoringSpec

ROUTER = Path(__file__).parents[2] / "aios_dagster" / "defs" / "models" / "email_router"


def _write(tmp_path: Path, drift: dict) -> Path:
    doc = yaml.safe_load((ROUTER / "defs.yaml").read_text())
    doc["attributes"]["drift"] = drift
    folder = tmp_path / "models" / "email_router"
    folder.mkdir(parents=True)
    (folder / "defs.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "models"


def test_per_column_settings_reach_the_spec(tmp_path: Path) -> None:
    models = _write(
        tmp_path,
        {
            "features": {
                "drift_share": 0.25,
                "per_column_method": {"spend_30d": "psi"},
                "per_column_threshold": {"spend_30d": 0.2, "tenure_years": 0.05},
            },
            "predictions": {"per_column_method": {"queue": "jensenshannon"}},
        },
    )
    spec = load_catalog(models)["email_router"]
    assert spec.monitoring.features.preset_settings() == {
        "drift_share": 0.25,
        "per_column_method": {"spend_30d": "psi"},
        "per_column_threshold": {"spend_30d": 0.2, "tenure_years": 0.05},
    }
    assert spec.monitoring.predictions.per_column_method == {"queue": "jensenshannon"}


@pytest.mark.parametrize(
    ("drift", "words"),
    [
        (
            {"features": {"per_column_method": {"spend_3od": "psi"}}},
            ["drift.features.per_column_method", "spend_3od", "not monitored"],
        ),
        (
            {"features": {"per_column_method": {"spend_30d": "wassertein"}}},
            ["per_column_method['spend_30d']", "unknown drift method 'wassertein'"],
        ),
        (
            {"features": {"per_column_threshold": {"spend_30d": -0.1}}},
            ["per_column_threshold['spend_30d']", "above 0"],
        ),
        ({"features": {"drift_share": 1.5}}, ["drift_share", "(0, 1]"]),
        (
            {"predictions": {"per_column_threshold": {"queue_conf": 0.1}}},
            ["drift.predictions.per_column_threshold", "queue_conf"],
        ),
        ({"window": {"reference": "fixed"}}, ["reference_start and reference_end"]),
        ({"features": {"treshold": 0.1}}, ["treshold", "Extra inputs"]),
    ],
)
def test_a_bad_drift_setting_fails_the_load_naming_file_and_field(
    tmp_path: Path, drift: dict, words: list[str]
) -> None:
    models = _write(tmp_path, drift)
    with pytest.raises(ValueError) as raised:
        load_catalog(models)
    message = str(raised.value)
    assert str(models / "email_router" / "defs.yaml") in message
    for word in words:
        assert word in message, message


def test_windows_are_anchored_on_the_partition_day() -> None:
    sliding = MonitoringSpec.of(MonitoringConfig.model_validate({}))
    w = sliding.windows(date(2026, 11, 22))
    assert w.current == (date(2026, 11, 16), date(2026, 11, 22))
    assert w.reference == (date(2026, 11, 9), date(2026, 11, 15))
    # An earlier day has its own windows, whatever landed since.
    assert sliding.windows(date(2026, 11, 20)).current == (date(2026, 11, 14), date(2026, 11, 20))

    fixed = MonitoringSpec.of(
        MonitoringConfig.model_validate(
            {
                "window": {
                    "current_days": 3,
                    "reference": "fixed",
                    "reference_start": "2026-11-01",
                    "reference_end": "2026-11-14",
                }
            }
        )
    )
    w = fixed.windows(date(2026, 11, 22))
    assert w.current == (date(2026, 11, 20), date(2026, 11, 22))
    assert w.reference == (date(2026, 11, 1), date(2026, 11, 14))
