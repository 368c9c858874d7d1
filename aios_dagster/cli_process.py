"""Run a UI server in the foreground until Ctrl-C or SIGTERM (``mlflow-ui``, ``drift-ui``).

The server gets its own process group, so stopping it reaches every worker it starts; whatever
of the group outlives the server is killed on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def serve_foreground(command: list[str], env: dict[str, str]) -> int:
    """Start ``command`` and wait for it; its exit status (re-raises an interrupt after the
    group is stopped)."""
    from aios_dagster.cli import _default_signals, _exit_on_signals

    _exit_on_signals()
    proc = subprocess.Popen(command, env=env, preexec_fn=_default_signals, start_new_session=True)
    try:
        return proc.wait()
    except (KeyboardInterrupt, SystemExit):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
