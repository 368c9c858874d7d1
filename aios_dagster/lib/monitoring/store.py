"""Where monitoring reports are kept for ML teams to browse."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class ReportStore(dg.ConfigurableResource):
    """Where drift reports are kept for ML teams to browse (a folder per report)."""

    root: str
    drift_share_threshold: float = 0.3

    def report_dir(self, name: str) -> Path:
        return Path(self.root) / name
