"""Keep a local Triton alive for as long as ``aios-dagster dev`` runs.

A server that dies under ``dagster dev`` (``kill -9``, the OOM killer, a crash) must not stay a
zombie while runs fail against its address: the supervisor notices the death, reaps the
server, kills the Python backend stubs it orphaned and removes their ``/dev/shm`` regions,
logs what happened and starts it again on the *same* ports, so a run that retries its
requests (``TritonResource`` does) carries on. Restarts are bounded: a server that keeps dying
is a problem to show, not to hide in a loop.

The ports and the server's process group are written to ``state.json`` in the work folder, so
the next ``make dev`` over the same data folder cleans up what a killed predecessor left (its
server still holding the ports, its stubs and their shared memory) before it starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from aios_dagster.lib.serving.launcher import LocalTritonServer, TritonStartError
from aios_dagster.lib.serving.processes import kill_leftovers

_logger = logging.getLogger(__name__)

DEFAULT_PORTS = (8000, 8001, 8002)
"""Triton's own defaults (http, grpc, metrics), and the gRPC port ``Settings`` expects."""

STATE_FILE = "state.json"


class TritonSupervisor:
    """Start a ``LocalTritonServer`` on fixed ports and restart it when it dies.

    Use as a context manager: entering starts the server (after cleaning up what an earlier
    supervisor of the same work folder left behind) and a watcher thread; leaving stops both.
    ``max_restarts`` restarts are allowed within ``restart_window_s``; the n-th restart in a
    row waits ``backoff_s * 2**(n-1)`` seconds (capped by ``max_backoff_s``). Once the budget is
    spent the supervisor gives up, logs it as an error and ``gave_up`` turns true.
    """

    def __init__(
        self,
        model_repository: Path,
        work_dir: Path,
        ports: tuple[int, int, int] = DEFAULT_PORTS,
        *,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        poll_interval_s: float = 0.5,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.server = LocalTritonServer(
            model_repository, self.work_dir, ports=ports, startup_timeout_s=startup_timeout_s
        )
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.restarts = 0
        self.gave_up = False
        self._restart_times: list[float] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url

    @property
    def state_path(self) -> Path:
        return self.work_dir / STATE_FILE

    # -- state of the previous run -----------------------------------------------------------
    def _clean_previous(self) -> None:
        """Kill the server and stubs a killed earlier supervisor left; remove their memory."""
        try:
            state = json.loads(self.state_path.read_text())
            pgid, prefix = int(state["pgid"]), str(state["shm_prefix"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _logger.warning("ignoring unreadable %s: %s", self.state_path, exc)
            return
        owner = int(state.get("supervisor_pid", 0))
        if owner and owner != os.getpid() and _alive(owner):
            raise TritonStartError(
                f"another supervisor (pid {owner}, e.g. a running `make dev`) serves Triton from "
                f"{self.work_dir} on {state.get('grpc_url')}: stop it first, or give this one "
                f"another AIOS_DATA_DIR"
            )
        killed = kill_leftovers(pgid, prefix)
        if killed:
            _logger.warning(
                "Triton: killed processes %s left running by an earlier run (process group %d) "
                "and removed their /dev/shm regions",
                killed,
                pgid,
            )
        self.state_path.unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "pgid": self.server.pid,
            "shm_prefix": self.server.shm_prefix,
            "grpc_url": self.grpc_url,
            "http_url": self.http_url,
            "metrics_url": self.metrics_url,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TritonSupervisor:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._clean_previous()
        self.server.start()
        self._write_state()
        _logger.info("Triton started: pid %s, gRPC %s", self.server.pid, self.grpc_url)
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=self.server.stop_timeout_s + 30)
            self._watcher = None
        with self._lock:
            self.server.stop()
            self.state_path.unlink(missing_ok=True)

    def __enter__(self) -> TritonSupervisor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- watching ----------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_interval_s):
            with self._lock:
                code = self.server.exit_code()
            if code is None:
                continue
            self._on_death(code)
            if self.gave_up:
                return

    def _on_death(self, code: int) -> None:
        """Reap and clean up a dead server, then restart it with backoff while budget lasts."""
        pid = self.server.pid
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        with self._lock:
            self.server.stop()  # reaps; SIGKILLs the orphaned stubs; removes their /dev/shm
        _logger.error(
            "Triton (pid %s, gRPC %s) %s; its backend stubs were killed and their shared "
            "memory removed",
            pid,
            self.grpc_url,
            how,
        )
        while not self._stopping.is_set():
            now = time.monotonic()
            self._restart_times = [
                t for t in self._restart_times if now - t < self.restart_window_s
            ]
            if len(self._restart_times) >= self.max_restarts:
                self.gave_up = True
                _logger.error(
                    "Triton died %d times within %.0fs: not restarting it again. Runs that "
                    "need it will fail; see %s and restart `make dev`",
                    len(self._restart_times) + 1,
                    self.restart_window_s,
                    self.server.log_path,
                )
                return
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** len(self._restart_times))
            self._restart_times.append(now)
            _logger.warning(
                "restarting Triton on %s in %.1fs (restart %d of at most %d per %.0fs)",
                self.grpc_url,
                delay,
                len(self._restart_times),
                self.max_restarts,
                self.restart_window_s,
            )
            if self._stopping.wait(delay):
                return
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.server.start()
                    self._write_state()
            except TritonStartError as exc:
                _logger.error("Triton restart failed: %s", exc)
                continue
            self.restarts += 1
            _logger.warning(
                "Triton restarted: pid %s, gRPC %s (same address as before)",
                self.server.pid,
                self.grpc_url,
            )
            return


def _alive(pid: int) -> bool:
    """A running (not zombie) process, from /proc."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_state(work_dir: Path) -> dict[str, object] | None:
    """What a running supervisor wrote about its server, or None when none runs."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        return dict(json.loads((Path(work_dir) / STATE_FILE).read_text()))
    return None
