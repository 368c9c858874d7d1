"""The Evidently workspace teams browse: one project per model, its reports, its dashboard.

Real reports are added to a real local workspace and read back through Evidently's own
``Workspace``; ``aios-dagster drift-ui`` runs as the real console script and serves the real
Evidently UI, asked over HTTP for the project, its runs and the dashboard's series.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aios_dagster.lib.monitoring.reports import (
    feature_drift_report,
    prediction_drift_report,
    quality_report,
    snapshot_metric_values,
)
from aios_dagster.lib.monitoring.workspace import DRIFT_TAB, QUALITY_TAB, DriftWorkspace
from aios_dagster.settings import Settings
from tests.net import free_port

CLI = str(Path(sys.executable).with_name("aios-dagster"))
MODEL = "email_router"
PANELS = {
    "Feature drift: share of drifted columns": ["features"],
    "Feature drift: drifted columns": ["features"],
    "Prediction drift: share of drifted columns": ["predictions"],
    "Quality on labelled rows: accuracy and F1 per head": ["quality"],
}


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Any]:
    """A feature, a prediction and a quality report, each for its own day."""
    rng = np.random.default_rng(3)
    n = 120
    reference = pd.DataFrame({"spend": rng.normal(0, 1, n), "tenure": rng.normal(5, 1, n)})
    current = pd.DataFrame({"spend": rng.normal(1, 1, n), "tenure": rng.normal(5, 1, n)})
    queue = rng.choice(["cards", "fraud", "loans"], n)
    preds_ref = pd.DataFrame({"queue": queue, "queue_confidence": rng.uniform(0.5, 1, n)})
    preds_cur = pd.DataFrame({"queue": queue[::-1], "queue_confidence": rng.uniform(0, 1, n)})
    labelled = pd.DataFrame(
        {"label": queue, "queue": np.where(rng.random(n) < 0.8, queue, "cards")}
    )
    return {
        "features": feature_drift_report(
            reference, current, settings={"drift_share": 0.5}, timestamp=datetime(2026, 11, 18)
        ),
        "predictions": prediction_drift_report(
            preds_ref,
            preds_cur,
            settings={},
            timestamp=datetime(2026, 11, 19),
            categorical_columns=["queue"],
            numerical_columns=["queue_confidence"],
        ),
        "quality": quality_report(
            labelled, heads={"queue": ("label", "queue")}, timestamp=datetime(2026, 11, 20)
        ),
    }


def _filled(path: Path, snapshots: dict[str, Any]) -> tuple[DriftWorkspace, dict[str, str]]:
    workspace = DriftWorkspace(path)
    return workspace, {kind: workspace.add_report(MODEL, s) for kind, s in snapshots.items()}


def test_one_project_per_model_however_often_asked(tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace

    path = tmp_path / "ws"
    first = DriftWorkspace(path).project_id(MODEL, description="support-email router")
    assert DriftWorkspace(path).project_id(MODEL) == first  # a later process: a fresh object
    ids: list[str] = []
    start = threading.Barrier(6)

    def ask(model: str) -> None:
        start.wait()
        ids.append(DriftWorkspace(path).project_id(model))

    # Two runs reporting at once: the lock makes find-or-create one step.
    threads = [threading.Thread(target=ask, args=(m,)) for m in [MODEL] * 3 + ["other"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ids.count(first) == 3 and len(set(ids)) == 2
    projects = {p.name: p for p in Workspace(str(path)).list_projects()}
    assert sorted(projects) == [MODEL, "other"]
    assert projects[MODEL].description == "support-email router"
    assert str(projects["other"].id) != first
    for name in (MODEL, "other"):
        dashboard = DriftWorkspace(path).dashboard(name)
        assert sorted(p.title for p in dashboard.panels) == sorted(PANELS)


def test_reports_are_runs_of_the_project_with_their_days(tmp_path: Path, snapshots) -> None:
    from evidently.ui.workspace import Workspace

    workspace, runs = _filled(tmp_path / "ws", snapshots)
    assert sorted(workspace.run_ids(MODEL)) == sorted(runs.values())
    evidently = Workspace(str(workspace.path))
    (project,) = evidently.search_project(MODEL)
    assert sorted(map(str, evidently.list_runs(project.id))) == sorted(runs.values())
    for kind, run_id in runs.items():
        stored = evidently.get_run(project.id, run_id)
        assert stored.tags == [kind]
        assert stored.timestamp == snapshots[kind].to_snapshot_model().timestamp
    assert workspace.run_ids("other") == [] and workspace.runs("other") == []
    listed = workspace.runs(MODEL)  # ordered by the day each report judged
    assert [(r.id, r.tags) for r in listed] == [(runs[k], (k,)) for k in snapshots]
    assert [r.timestamp.day for r in listed] == [18, 19, 20]
    assert listed[2].name == "quality 2026-11-20"
    base = "http://127.0.0.1:8123/"
    assert workspace.project_url(MODEL, base) == f"http://127.0.0.1:8123/projects/{project.id}"
    assert workspace.report_url(MODEL, runs["quality"], base) == (
        f"http://127.0.0.1:8123/projects/{project.id}/reports/{runs['quality']}"
    )
    with pytest.raises(LookupError, match="no Evidently project 'other'"):
        workspace.project_url("other")


def test_a_rerun_partition_replaces_its_run(tmp_path: Path) -> None:
    """Re-running a day must not put a second point for that day on the dashboard."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"spend": rng.normal(0, 1, 60)})

    def report(day: str) -> Any:
        return feature_drift_report(frame, frame, settings={}, tags=[f"partition:{day}"])

    workspace = DriftWorkspace(tmp_path / "ws")
    first = workspace.add_report(MODEL, report("18"), replaces=["features", "partition:18"])
    other_day = workspace.add_report(MODEL, report("19"), replaces=["features", "partition:19"])
    again = workspace.add_report(MODEL, report("18"), replaces=["features", "partition:18"])
    assert again != first
    assert sorted(workspace.run_ids(MODEL)) == sorted([other_day, again])
    # Without ``replaces`` a report is simply added.
    extra = workspace.add_report(MODEL, report("18"))
    assert sorted(workspace.run_ids(MODEL)) == sorted([other_day, again, extra])


def test_dashboard_has_each_panel_once_and_gets_a_lost_one_back(tmp_path: Path) -> None:
    workspace = DriftWorkspace(tmp_path / "ws")
    project_id = workspace.project_id(MODEL)
    dashboard = workspace.dashboard(MODEL)
    tabs = {t.title: t.panels for t in dashboard.tabs}
    assert sorted(tabs) == [DRIFT_TAB, QUALITY_TAB]
    by_id = {p.id: p for p in dashboard.panels}
    assert sorted(pid for ids in tabs.values() for pid in ids) == sorted(by_id)  # each once
    for panel in dashboard.panels:
        assert [v.tags for v in panel.values] == [PANELS[panel.title]] * len(panel.values)
    quality = next(p for p in dashboard.panels if p.title.startswith("Quality"))
    assert [v.metric for v in quality.values] == [
        "evidently:metric_v2:Accuracy",
        "evidently:metric_v2:F1Score",
    ]

    # A dashboard edited by hand that lost a panel gets it back, and nothing doubles.
    lost = dashboard.panels.pop(0)
    for tab in dashboard.tabs:
        tab.panels = [p for p in tab.panels if p != lost.id]
    workspace.workspace().save_dashboard(project_id, dashboard)
    workspace.project_id(MODEL)
    workspace.project_id(MODEL)
    again = workspace.dashboard(MODEL)
    assert sorted(p.title for p in again.panels) == sorted(PANELS)
    assert sum(len(t.panels) for t in again.tabs) == len(PANELS)


def test_a_report_with_its_data(tmp_path: Path, snapshots) -> None:
    workspace = DriftWorkspace(tmp_path / "ws")
    run_id = workspace.add_report(MODEL, snapshots["features"], include_data=True)
    evidently = workspace.workspace()
    (project,) = evidently.search_project(MODEL)
    assert workspace.run_ids(MODEL) == [run_id]
    datasets = evidently.list_datasets(project.id).datasets
    assert sorted(d.row_count for d in datasets) == [120, 120]  # current and reference


def _call(url: str, body: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
            is_json = response.headers.get_content_type() == "application/json"
            return response.status, json.loads(text) if is_json else text
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _processes_serving(workspace: Path, port: int) -> list[str]:
    """Command lines of live processes started for this UI (the CLI, evidently ui, ...)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if str(workspace) in " ".join(args) or ("--port" in args and str(port) in args):
                found.append(" ".join(args))
    return found


def _default_signals() -> None:
    """Some shells start children with SIGTERM/SIGINT ignored (see STACK-NOTES)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_drift_ui_serves_the_workspace_and_stops(tmp_path: Path, snapshots) -> None:
    data = tmp_path / "data"
    settings = Settings.from_env({"AIOS_DATA_DIR": str(data)})
    workspace, runs = _filled(settings.drift_workspace_dir, snapshots)
    project_id = workspace.project_id(MODEL)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [CLI, "drift-ui", "--port", str(port)],
        env={**os.environ, "AIOS_DATA_DIR": str(data)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_signals,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        status, projects = 0, None
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                status, projects = _call(f"{base}/api/projects")
                if status == 200:
                    break
            time.sleep(0.5)
        if status != 200:
            proc.kill()
            raise AssertionError(
                f"the Evidently UI never answered (exit {proc.poll()}):\n{proc.communicate()[0]}"
            )
        assert [(p["id"], p["name"]) for p in projects] == [(project_id, MODEL)]
        status, listed = _call(f"{base}/api/projects/{project_id}/snapshots")
        assert status == 200
        assert {s["id"]: s["tags"] for s in listed} == {r: [k] for k, r in runs.items()}
        # The dashboard's own series filters find the values the reports hold.
        status, dashboard = _call(f"{base}/api/v2/dashboards/{project_id}")
        assert status == 200 and sorted(p["title"] for p in dashboard["panels"]) == sorted(PANELS)
        titles = list(PANELS)
        feature_share = next(p for p in dashboard["panels"] if p["title"] == titles[0])
        quality = next(p for p in dashboard["panels"] if p["title"] == titles[3])
        for panel, kind, expected in (
            (feature_share, "features", ["drifted_columns.share"]),
            (quality, "quality", ["queue.accuracy", "queue.f1"]),
        ):
            filters = [
                {k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")}
                for v in panel["values"]
            ]
            status, series = _call(
                f"{base}/api/v2/snapshots/{project_id}/data_series_batch",
                {"series_filter": filters},
            )
            assert status == 201, series
            assert [s["snapshot_id"] for s in series["sources"]] == [runs[kind]]
            values = snapshot_metric_values(snapshots[kind])
            got = sorted(s["values"][0] for s in series["series"])
            assert got == pytest.approx(sorted(values[key] for key in expected))
        status, page = _call(workspace.report_url(MODEL, runs["features"], base))
        assert status == 200 and "<html" in page.lower()

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert f"Evidently UI on {base}" in output
        with pytest.raises(OSError):  # the server is gone
            _call(f"{base}/api/projects")
        assert _processes_serving(settings.drift_workspace_dir, port) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_drift_ui_without_a_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [CLI, "drift-ui", "--port", str(free_port())],
        env={**os.environ, "AIOS_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_default_signals,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"aios-dagster drift-ui: no Evidently workspace at {data}/reports/evidently_workspace: "
        "run the triage job (make demo) to write drift reports into it"
    ]
    assert done.stdout == "" and list(data.iterdir()) == []


def test_drift_ui_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from aios_dagster.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["drift-ui", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: aios-dagster drift-ui")
    assert "(default: 8010)" in text and "(default: 127.0.0.1)" in text
