"""Where monitoring reports are kept for ML teams to browse: files and the Evidently workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from aios_dagster.lib.monitoring.workspace import DriftWorkspace


class ReportStore(dg.ConfigurableResource):
    """HTML/JSON reports (a folder per asset and partition) and the Evidently workspace.

    ``ui_url`` is where ``aios-dagster drift-ui`` serves the workspace, for the links in the
    assets' metadata. A window larger than ``max_report_rows`` is rendered by Evidently on a
    seeded sample of that many rows (the checks' verdicts always use every row); Evidently's
    report costs grow with rows, and a person reads the same picture from the sample.
    """

    root: str
    workspace: str
    ui_url: str = "http://127.0.0.1:8010"
    max_report_rows: int = Field(default=200_000, gt=0)

    def report_dir(self, name: str) -> Path:
        return Path(self.root) / name

    def drift_workspace(self) -> DriftWorkspace:
        return DriftWorkspace(Path(self.workspace))

    def links(self, model: str, html: Path | None, run: str | None) -> dict[str, Any]:
        """Metadata links to a report: its HTML file, and its project and run in the UI."""
        out: dict[str, Any] = {}
        if html is not None:
            out["report_html"] = str(html)
            out["report_url"] = html.as_uri()
        if run is not None:
            workspace = self.drift_workspace()
            out["workspace_project"] = workspace.project_url(model, base_url=self.ui_url)
            out["workspace_report"] = workspace.report_url(model, run, base_url=self.ui_url)
        return out
