"""``aios-dagster drift-ui``: the Evidently UI over the drift workspace.

The pipelines add every drift and quality report to an Evidently workspace under the data
folder (``Settings.drift_workspace_dir``, one project per model); this serves it with
``evidently ui`` until Ctrl-C or SIGTERM. It never creates a workspace: an empty UI would hide
that the reports are written somewhere else.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from aios_dagster.settings import Settings


def _cli_error(message: str) -> Exception:
    from aios_dagster.cli import CliError  # cli imports this module; import back lazily

    return CliError(message)


def drift_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    """``evidently ui`` of this environment on the drift workspace."""
    return [
        str(Path(sys.executable).with_name("evidently")),
        "ui",
        "--workspace",
        str(settings.drift_workspace_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]


def cmd_drift_ui(args: argparse.Namespace, settings: Settings) -> None:
    """Serve the Evidently UI until Ctrl-C or SIGTERM, then stop it and whatever it started."""
    from aios_dagster.cli_process import serve_foreground

    workspace = settings.drift_workspace_dir
    if not workspace.is_dir():
        raise _cli_error(
            f"no Evidently workspace at {workspace}: run the triage job (make demo) to write "
            "drift reports into it"
        )
    env = {**os.environ, "DO_NOT_TRACK": "1"}  # the UI otherwise sends usage events
    sys.stdout.write(f"Evidently UI on http://{args.host}:{args.port} (workspace {workspace})\n")
    sys.stdout.flush()
    code = serve_foreground(drift_ui_command(settings, args.host, args.port), env)
    if code != 0:
        raise _cli_error(f"evidently ui exited with status {code}")


def add_drift_commands(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``drift-ui``."""
    ui = sub.add_parser(
        "drift-ui",
        help="serve the Evidently UI for the drift and quality reports",
        description="Run `evidently ui` on the drift workspace (<data>/reports/"
        "evidently_workspace: one project per model, its reports over time); Ctrl-C stops it.",
        formatter_class=formatter_class,
    )
    ui.add_argument("--host", default="127.0.0.1", help="address the Evidently UI listens on")
    ui.add_argument("--port", type=int, default=8010, help="Evidently UI port")
    ui.set_defaults(run=cmd_drift_ui)
