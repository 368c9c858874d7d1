"""Clean up after Triton processes: its process group, orphaned backend stubs, /dev/shm.

The server runs in its own process group together with the Python backend stubs it starts;
each stub holds a POSIX shared-memory region named with the server's prefix. Killing the
server alone (``kill -9 <pid>``, the OOM killer) leaves the stubs running under init and the
regions in RAM, so cleanup works on the group and the prefix, not on the server's pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_SHM_DIR = Path("/dev/shm")


def kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the server's process group (it includes the Python backend stubs)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def remove_backend_shm(prefix: str) -> None:
    """Delete the Python backend's shared-memory regions of a server that is gone."""
    for path in _SHM_DIR.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (Linux ``/proc``), leader included if not reaped."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the parenthesised command name: state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _is_triton_process(pid: int) -> bool:
    with contextlib.suppress(OSError):
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        return b"tritonserver" in cmdline or b"triton_python_backend_stub" in cmdline
    return False


def kill_leftovers(pgid: int, shm_prefix: str, timeout_s: float = 10.0) -> list[int]:
    """Kill what is left of a server that died uncleanly; return the pids killed.

    A server killed on its own (``kill -9 <pid>``, the OOM killer) leaves its Python backend
    stubs running, re-parented to init, each holding a ``/dev/shm`` region. Only processes of
    the server's group that are Triton binaries are touched, so a recycled group id of some
    other program is left alone. The regions with the server's prefix go once the stubs do.
    """
    victims = [pid for pid in _group_members(pgid) if _is_triton_process(pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(pid in _group_members(pgid) for pid in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    remove_backend_shm(shm_prefix)
    return victims
