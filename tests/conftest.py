"""Project-wide pytest configuration: shared fixtures live in plugin modules."""

import os

import pytest

pytest_plugins = ["tests.triton_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def _no_analytics() -> None:
    """Tests run offline: GE, Evidently and dbt must not try to phone home (as the CLI sets)."""
    for key, value in {
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }.items():
        os.environ.setdefault(key, value)
