"""The embedded Dagster instance: SQLite storage under the data folder, telemetry off."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_INSTANCE_YAML = """\
# Written by aios-dagster for the embedded profile. Production uses deploy/ (Postgres storage).
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_instance_home(home: Path) -> Path:
    """Create ``DAGSTER_HOME`` with a dagster.yaml if missing (by the CLI, never at import)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_INSTANCE_YAML)
    return home
