"""The UIs people use, in a real headless browser, over what the whole flow produced.

After the package's drifted run (and the loop tests), the Dagster webserver (on that instance,
with this code location), the Evidently UI (on its workspace) and the MLflow UI (on its
registry) are started for real and opened in Debian's Chromium through Playwright (no browser
download: ``make test`` installs the ``chromium`` package). Screenshots are kept as artefacts in
``test-artifacts/ui/``.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from aios_dagster.cli_drift import drift_ui_command
from aios_dagster.cli_models import mlflow_ui_command
from aios_dagster.lib.monitoring.workspace import DriftWorkspace
from tests.deploy.support import default_signals
from tests.integration.pipeline import PipelineRun
from tests.net import free_port

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
# What this machine's closed network needs (no background calls home, no QUIC), as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
MODEL = "email_router"


@contextlib.contextmanager
def _serving(name: str, command: list[str], env: dict[str, str], url: str) -> Iterator[str]:
    """Start a server in its own process group, wait until ``url`` answers, stop it after."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / f"{name}.log").open("w")
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=default_signals,
    )
    try:
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _wait(url: str, name: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=3)
            return
        time.sleep(0.5)
    log = (ARTIFACTS / f"{name}.log").read_text()[-3000:]
    pytest.fail(f"{name} did not answer {url} within {timeout_s:.0f} s:\n{log}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _page(browser: Browser) -> Page:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    return page


def _shoot(page: Page, name: str, *, full_page: bool = False, charts: bool = False) -> None:
    """A screenshot; with ``charts``, once the page's requests have settled and its charts
    have finished drawing (bounded: the Dagster UI polls for ever and never settles)."""
    if charts:
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_load_state("networkidle", timeout=5_000)
        page.wait_for_timeout(1_500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def _skip_dagster_welcome(page: Page) -> None:
    """The open-source UI asks once per browser profile to join its community."""
    with contextlib.suppress(Exception):
        page.get_by_role("button", name="Skip").click(timeout=5_000)


def test_dagster_evidently_and_mlflow_uis_show_the_platform(
    drift_run: PipelineRun, browser: Browser
) -> None:
    settings = drift_run.settings
    env = {
        **os.environ,
        "AIOS_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(drift_run.instance.root_directory),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    ports = {name: free_port() for name in ("dagster", "evidently", "mlflow")}
    webserver = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        *("-h", "127.0.0.1", "-p", str(ports["dagster"]), "-m", "aios_dagster.definitions"),
    ]
    with (
        _serving("dagster", webserver, env, f"http://127.0.0.1:{ports['dagster']}") as dagster,
        _serving(
            "evidently",
            drift_ui_command(settings, "127.0.0.1", ports["evidently"]),
            env,
            f"http://127.0.0.1:{ports['evidently']}",
        ) as evidently,
        _serving(
            "mlflow",
            mlflow_ui_command(settings, ports["mlflow"]),
            env,
            f"http://127.0.0.1:{ports['mlflow']}",
        ) as mlflow,
    ):
        _wait(f"{dagster}/server_info", "dagster")
        page = _page(browser)
        # The asset graph shows the project's groups.
        page.goto(f"{dagster}/asset-groups")
        _skip_dagster_welcome(page)
        for group in ("ingest", "features", "models", "inference", "monitoring"):
            page.get_by_text(group, exact=True).first.wait_for()
        _shoot(page, "dagster-asset-graph")
        # An asset page shows its check and the metadata the run recorded.
        page.goto(f"{dagster}/assets/{MODEL}_feature_drift")
        page.get_by_text("drift_share", exact=True).first.wait_for()
        page.get_by_text("dataset_drift", exact=True).first.wait_for()
        _shoot(page, "dagster-asset-feature-drift", full_page=True)
        page.goto(f"{dagster}/assets/{MODEL}_feature_drift?view=checks")
        page.get_by_text("drift_within_threshold").first.wait_for()
        _shoot(page, "dagster-asset-checks")

        # The Evidently UI: the model's project and its dashboard panels.
        _wait(f"{evidently}/api/projects", "evidently")
        workspace = DriftWorkspace(settings.drift_workspace_dir)
        page.goto(workspace.project_url(MODEL, base_url=evidently))
        page.get_by_text("Feature drift: share of drifted columns").first.wait_for()
        _shoot(page, "evidently-project", full_page=True, charts=True)

        # The MLflow UI: the registered model and its versions.
        _wait(f"{mlflow}/health", "mlflow")
        page.goto(f"{mlflow}/#/models/{MODEL}")
        page.get_by_text("Version 1").first.wait_for()
        _shoot(page, "mlflow-model", full_page=True)
    for shot in (
        "dagster-asset-graph",
        "dagster-asset-feature-drift",
        "dagster-asset-checks",
        "evidently-project",
        "mlflow-model",
    ):
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 10_000, shot
