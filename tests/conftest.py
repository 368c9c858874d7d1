"""Project-wide pytest configuration: shared fixtures live in plugin modules."""

import os
from typing import Any

import pytest

pytest_plugins = ["tests.triton_fixtures", "tests.kafka_broker"]
INTEGRATION = "tests/integration"
# Joins the integration unit, so it never runs beside a whole-flow test: its Triton's OTLP spans
# went missing in two of three two-worker runs (never alone, nor beside the other serving,
# unit and inference tests under load); the cause is not found yet.
WITH_INTEGRATION = ("tests/serving/test_tracing.py",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Units of work for ``pytest -n`` (``make test``): a test module, or the whole integration
    package, whose pipeline runs are package fixtures that one worker must build once and
    share; it is the longest unit, so it starts first. (xdist's own ``loadgroup`` marks do not
    reach its scheduler under pytest 9, which no longer lets a plugin rename a collected item.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleOrIntegrationPackage(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.startswith(INTEGRATION + "/") or path in WITH_INTEGRATION:
                return INTEGRATION
            return path

        def _assign_work_unit(self, node: Any) -> None:
            if INTEGRATION in self.workqueue:
                self.workqueue.move_to_end(INTEGRATION, last=False)
            super()._assign_work_unit(node)

    return ModuleOrIntegrationPackage(config, log)


@pytest.fixture(scope="session", autouse=True)
def _no_analytics() -> None:
    """Tests run offline: GE, Evidently and dbt must not try to phone home (as the CLI sets)."""
    for key, value in {
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }.items():
        os.environ.setdefault(key, value)
