"""A real deployment on this machine: ``dagster-daemon`` and ``dagster-webserver`` over a
Postgres instance configured from ``deploy/dagster.yaml``, serving the project's code location.

Only the Kubernetes run launcher is left out (no cluster here): the default launcher starts each
run as a local process, through the same run queue, tag limits and storage as in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, default_signals
from tests.net import free_port
from tests.postgres import scratch

LOCATION = "aios_dagster"


@dataclass(frozen=True)
class Deployment:
    url: str
    home: Path
    env: dict[str, str]
    logs: Path


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the daemon's code servers and run workers start their own
    sessions, so a process group does not reach them; the parent links in /proc do."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_tree(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process and everything it started; SIGKILL what is left after the wait."""
    tree = [proc.pid, *_descendants(proc.pid)]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
        proc.poll()
        time.sleep(0.2)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _instance_yaml() -> str:
    """deploy/dagster.yaml's storage (its database from AIOS_PG_DAGSTER_DB) and run queue."""
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config = {key: deployed[key] for key in ("storage", "run_coordinator", "telemetry")}
    # The daemon checks the queue often enough for a test; production keeps Dagster's default.
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    return yaml.safe_dump(config)


@contextlib.contextmanager
def deployment(tmp: Path, env: dict[str, str], artifacts: Path) -> Iterator[Deployment]:
    """The daemon and the webserver on a scratch Postgres database; both stopped after."""
    artifacts.mkdir(parents=True, exist_ok=True)
    with scratch("database", "aios_live") as database:
        home = tmp / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(_instance_yaml())
        workspace = tmp / "workspace.yaml"
        module = {"module_name": "aios_dagster.definitions", "location_name": LOCATION}
        workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": module}]}))
        full_env = {
            **os.environ,
            **env,
            "DAGSTER_HOME": str(home),
            "AIOS_PG_HOST": "127.0.0.1",
            "AIOS_PG_USER": "postgres",
            "AIOS_PG_PASSWORD": "",
            "AIOS_PG_DAGSTER_DB": database,
            "DAGSTER_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
        port = free_port()
        bin_dir = Path(sys.executable).parent
        commands = {
            "webserver": [
                str(bin_dir / "dagster-webserver"),
                *("-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)),
            ],
            "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs = {name: (artifacts / f"{name}.log").open("w") for name in commands}
        try:
            for name, command in commands.items():
                procs[name] = subprocess.Popen(
                    command,
                    env=full_env,
                    cwd=tmp,
                    stdout=logs[name],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=default_signals,
                )
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/server_info", artifacts / "webserver.log", procs["webserver"])
            yield Deployment(url, home, full_env, artifacts)
        finally:
            for proc in procs.values():
                stop_tree(proc)
            for log in logs.values():
                log.close()


def wait_for(url: str, log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=3)
            return
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
