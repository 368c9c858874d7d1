"""The Evidently workspace: one project per model, its reports as runs, a dashboard over time.

The workspace is a folder in Evidently's local layout (``<project id>/metadata.json``,
``dashboard.json``, ``snapshots/<run id>.json``) that ``evidently ui --workspace`` serves
(``aios-dagster drift-ui``); the UI watches the folder, so reports added while it runs show up.

Projects, dashboards and runs are written through the same storage class Evidently's local
``Workspace`` uses (``Workspace.state``) rather than through ``Workspace`` itself: opening a
``Workspace`` also starts its dataset manager, which parses every stored run into memory, and
that grows with every report ever added. ``Workspace`` is still what ``include_data=True`` uses
(it uploads the report's input frames as datasets), and it reads everything written here.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aios_dagster.lib.monitoring.reports import FEATURES_TAG, PREDICTIONS_TAG, QUALITY_TAG

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardModel, DashboardPanelPlot, ProjectModel
    from evidently.ui.storage.local.base import LocalState
    from evidently.ui.workspace import Workspace

DEFAULT_UI_URL = "http://127.0.0.1:8010"  # not 8000: Triton's HTTP port under `make dev`
DRIFT_TAB = "Drift"
QUALITY_TAB = "Quality"
_LOCK_FILE = ".aios_projects.lock"


@dataclass(frozen=True)
class WorkspaceRun:
    """One report stored as a run of a model's project."""

    id: str
    name: str | None
    tags: tuple[str, ...]
    metadata: dict[str, str]
    timestamp: datetime


@dataclass(frozen=True)
class DriftWorkspace:
    """A local Evidently workspace at ``path`` (created on first use)."""

    path: Path

    def project_id(self, model_name: str, *, description: str = "") -> str:
        """The id of the project named ``model_name``, created with its dashboard if missing.

        Find-or-create holds an exclusive lock on a file in the workspace, so two runs that
        report at once still make one project. Panels are matched by title: a dashboard that
        lost a panel gets it back, and calling again never adds a second copy.
        """
        from evidently.sdk.models import ProjectModel

        with self._locked() as state:
            project = self._find(state, model_name)
            if project is None:
                project = ProjectModel(name=model_name, description=description or None)
                state.write_project(project)
            _ensure_panels(state, str(project.id))
            return str(project.id)

    def add_report(
        self,
        model_name: str,
        snapshot: Snapshot,
        *,
        include_data: bool = False,
        replaces: Sequence[str] = (),
    ) -> str:
        """Add ``snapshot`` as a run of the model's project and return the run id.

        The run keeps the snapshot's own timestamp (the partition day the caller evaluated),
        so the dashboard orders runs by the window judged, not by when they were computed.
        ``include_data`` also stores the report's input frames as Evidently datasets.
        ``replaces``: tags that identify what the report is of (its kind and partition); an
        earlier run carrying all of them is removed once the new one is written, so re-running
        a partition replaces its point on the dashboard instead of adding a second one.
        """
        project_id = self.project_id(model_name)
        if include_data:
            run_id = str(self.workspace().add_run(project_id, snapshot, include_data=True).id)
        else:
            from evidently.legacy.core import new_id

            run_id = str(new_id())
            self._state().write_snapshot(project_id, run_id, snapshot.to_snapshot_model())
        if replaces:
            state, wanted = self._state(), set(replaces)
            for earlier in self.runs(model_name):
                if earlier.id != run_id and wanted <= set(earlier.tags):
                    state.delete_snapshot(project_id, earlier.id)
        return run_id

    def run_ids(self, model_name: str) -> list[str]:
        """The ids of the model's runs (empty when it has no project yet)."""
        state = self._state()
        project = self._find(state, model_name)
        return [] if project is None else [str(r) for r in state.list_snapshots(project.id)]

    def runs(self, model_name: str) -> list[WorkspaceRun]:
        """The model's runs with their tags and times, oldest window first (each run is read in
        full: for listing, not for a hot path)."""
        state = self._state()
        project = self._find(state, model_name)
        if project is None:
            return []
        found = []
        for run_id in state.list_snapshots(project.id):
            model = state.read_snapshot(project.id, run_id)
            found.append(
                WorkspaceRun(
                    id=str(run_id),
                    name=model.name,
                    tags=tuple(model.tags),
                    metadata={k: str(v) for k, v in model.metadata.items()},
                    timestamp=model.timestamp,
                )
            )
        return sorted(found, key=lambda r: (r.timestamp, r.id))

    def dashboard(self, model_name: str) -> DashboardModel:
        """The model's dashboard as stored (tabs and panels)."""
        return self._state().read_dashboard(self._existing_id(model_name))

    def project_url(self, model_name: str, base_url: str = DEFAULT_UI_URL) -> str:
        """The project's dashboard in the Evidently UI served at ``base_url``."""
        return f"{base_url.rstrip('/')}/projects/{self._existing_id(model_name)}"

    def report_url(self, model_name: str, run_id: str, base_url: str = DEFAULT_UI_URL) -> str:
        """One run's report in the Evidently UI served at ``base_url``."""
        return f"{self.project_url(model_name, base_url)}/reports/{run_id}"

    def workspace(self) -> Workspace:
        """Evidently's own ``Workspace`` over this folder (it loads every run: open it rarely)."""
        from evidently.ui.workspace import Workspace

        return Workspace(str(self.path))

    def _state(self) -> LocalState:
        from evidently.ui.storage.local.base import LocalState

        self.path.mkdir(parents=True, exist_ok=True)
        return LocalState(str(self.path))

    def _existing_id(self, model_name: str) -> str:
        """Reading never creates: a model without a project has no dashboard or URL yet."""
        project = self._find(self._state(), model_name)
        if project is None:
            raise LookupError(f"no Evidently project {model_name!r} in {self.path}")
        return str(project.id)

    @staticmethod
    def _find(state: LocalState, model_name: str) -> ProjectModel | None:
        named = [p for p in map(state.read_project, state.list_projects()) if p.name == model_name]
        if len(named) > 1:
            ids = sorted(str(p.id) for p in named)
            raise ValueError(
                f"the Evidently workspace holds {len(named)} projects {model_name!r}: {ids}"
            )
        return named[0] if named else None

    @contextmanager
    def _locked(self) -> Iterator[LocalState]:
        state = self._state()
        with (self.path / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield state
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def dashboard_panels() -> dict[str, list[DashboardPanelPlot]]:
    """The panels every model's project gets, by tab.

    Each panel selects runs by the kind tag the report functions set; a panel never mixes two
    tags for one metric, because the UI's local storage matches a series to the first filter
    with its metric and then drops runs whose tags that filter does not have.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    def drift(tag: str, value_type: str, legend: str) -> PanelMetric:
        return PanelMetric(
            legend=legend,
            tags=[tag],
            metric="DriftedColumnsCount",
            metric_labels={"value_type": value_type},
        )

    return {
        DRIFT_TAB: [
            line_plot_panel(
                title="Feature drift: share of drifted columns",
                values=[drift(FEATURES_TAG, "share", "share of drifted features")],
                size="half",
            ),
            bar_plot_panel(
                title="Feature drift: drifted columns",
                values=[drift(FEATURES_TAG, "count", "drifted features")],
                size="half",
            ),
            line_plot_panel(
                title="Prediction drift: share of drifted columns",
                values=[drift(PREDICTIONS_TAG, "share", "share of drifted prediction columns")],
                size="full",
            ),
        ],
        QUALITY_TAB: [
            line_plot_panel(
                title="Quality on labelled rows: accuracy and F1 per head",
                values=[
                    PanelMetric(
                        legend="accuracy {{classification_name}}",
                        tags=[QUALITY_TAG],
                        metric="Accuracy",
                    ),
                    PanelMetric(
                        legend="F1 {{classification_name}}", tags=[QUALITY_TAG], metric="F1Score"
                    ),
                ],
                size="full",
            ),
        ],
    }


def _ensure_panels(state: LocalState, project_id: str) -> None:
    """Add the panels the dashboard lacks (by title), in one write.

    Written as a whole model: ``ProjectDashboard.add_panel(panel, tab=...)`` in Evidently 0.7.23
    lists the panel twice in a tab that already exists.
    """
    from evidently.sdk.models import DashboardTabModel

    dashboard = state.read_dashboard(project_id)
    titles = {p.title for p in dashboard.panels}
    changed = False
    for tab_title, panels in dashboard_panels().items():
        tab = next((t for t in dashboard.tabs if t.title == tab_title), None)
        if tab is None:
            tab = DashboardTabModel(title=tab_title, panels=[])
            dashboard.tabs.append(tab)
        for panel in panels:
            if panel.title in titles:
                continue
            dashboard.panels.append(panel)
            tab.panels.append(panel.id)
            changed = True
    if changed:
        state.write_dashboard(project_id, dashboard)


__all__ = ["DEFAULT_UI_URL", "DriftWorkspace", "WorkspaceRun", "dashboard_panels"]
