"""Start and stop a real NVIDIA Triton server from the ``nvidia-pytriton`` wheel, on CPU.

Production serving uses the NGC Triton image (GPU nodes, Kubernetes); this launcher is for
embedded and local use: tests, benchmarks and a laptop demo run the very same server binary
(Triton 2.51 with the Python backend) against the very same model repository, so what passes
here is what the image serves. We run the binary directly rather than pytriton's Python API
because the model repository, not a Python callable, is the unit we deploy.

Facts this encodes (see STACK-NOTES):

* the Python backend needs a backend directory holding ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the stub built for this Python minor version;
* the stub embeds the first ``python3`` on ``PATH`` (``PYTHONPATH`` has no effect), so this
  interpreter's ``bin`` goes first, and this interpreter's ``LIBDIR`` goes first on
  ``LD_LIBRARY_PATH`` so a distro libpython of another patch level is not picked up;
* some shells start children with SIGTERM/SIGINT *ignored*, which would make ``terminate()`` a
  no-op, so the child resets both to the default before exec;
* a busy port makes the server exit 1, so ports are picked free at start and the start is
  retried with new ports, unless the caller fixed the ports (``make dev``: clients and runs
  keep one URL), in which case a busy port is an error naming it;
* the Python backend keeps each model instance's tensors in a POSIX shared-memory region
  (``/dev/shm``, 1 MiB and up) that only a graceful shutdown removes; a killed server leaves
  them behind, in RAM. Each server gets its own region prefix, and whatever carries that
  prefix is removed once its process group is dead;
* now and then the binary aborts during start-up (SIGABRT, logged as gRPC's "Epoll1Poller ...
  epoll_wait error: Bad file descriptor"), seen when restarting right after a crash; a start-up
  that dies of a signal is retried on the *same* ports, so a restart keeps its addresses.

Server flags: ``--model-control-mode=explicit --load-model=*`` loads whatever the repository
holds at start and afterwards only what a client asks for (``TritonResource.load_model``), so
a publish never changes what is served behind a caller's back. ``--exit-on-error=false`` and
``--strict-readiness=false`` keep one broken model from taking the whole server down or
keeping it un-ready; readiness of a model is checked per model by the client instead.
"""

from __future__ import annotations

import contextlib
import filecmp
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections import deque
from pathlib import Path
from types import TracebackType

from aios_dagster.lib.serving.processes import kill_group, remove_backend_shm

_PYTRITON_PACKAGE = "nvidia-pytriton"
_LOG_TAIL_LINES = 40
_START_ATTEMPTS = 3
_PORT_BUSY_MARKERS = ("already in use", "failed to bind", "failed to start")


class TritonStartError(RuntimeError):
    """The server binary is missing, exited during start-up, or did not become ready."""


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError:
        return "<no log>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reset_signals() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartError(
            f"the Triton server binary comes from the '{_PYTRITON_PACKAGE}' wheel, which is not "
            f"installed in {sys.prefix}; install {_PYTRITON_PACKAGE}==0.7.0 (Linux x86_64/arm64)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _finalize_process(process: subprocess.Popen[bytes], shm_prefix: str) -> None:
    """Last-resort cleanup when a started server object is garbage collected or at exit."""
    if process.poll() is None:
        kill_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    if process.poll() is not None:
        remove_backend_shm(shm_prefix)


class LocalTritonServer:
    """A ``tritonserver`` child process bound to 127.0.0.1 on free ports.

    Use as a context manager, or ``start()``/``stop()``. ``stop()`` is idempotent and always
    reaps the process; a server object that is dropped without ``stop()`` is killed when it is
    garbage collected or the interpreter exits, so tests cannot leak servers.
    """

    def __init__(
        self,
        model_repository: Path | str,
        work_dir: Path,
        *,
        startup_timeout_s: float = 60.0,
        log_verbose: int = 0,
        stop_timeout_s: float = 15.0,
        ports: tuple[int, int, int] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``ports`` (http, grpc, metrics) fixes the addresses for good; default: free ports.
        ``extra_args`` are more ``tritonserver`` flags (e.g. ``--trace-config``)."""
        if ports is not None and len(set(ports)) != 3:
            raise ValueError(f"Triton needs three different ports (http, grpc, metrics): {ports}")
        # A folder, or an object-storage URL Triton reads itself (s3://host:port/bucket/path).
        self.model_repository: Path | str = (
            model_repository
            if isinstance(model_repository, str) and "://" in model_repository
            else Path(model_repository).resolve()
        )
        self.work_dir = Path(work_dir).resolve()
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = tuple(extra_args)
        self.log_path = self.work_dir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._ports: tuple[int, int, int] | None = ports
        self._fixed_ports = ports is not None
        # Unique per server object, so cleaning up after a crash never touches another server.
        self._shm_prefix = f"aios_triton_pb_{uuid.uuid4().hex[:12]}_"

    # -- addresses ---------------------------------------------------------------------------
    def _port(self, index: int) -> int:
        if self._ports is None:
            raise RuntimeError("the server has not been started")
        return self._ports[index]

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self._port(0)}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self._port(1)}"

    @property
    def metrics_url(self) -> str:
        return f"127.0.0.1:{self._port(2)}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def shm_prefix(self) -> str:
        """Prefix of the Python backend's ``/dev/shm`` regions of this server."""
        return self._shm_prefix

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """The server's exit status once it has died (reaping it), else None.

        Negative for a signal (``-9`` after ``kill -9``), as in ``subprocess``.
        """
        return None if self._process is None else self._process.poll()

    # -- start -------------------------------------------------------------------------------
    def _backend_directory(self, root: Path) -> Path:
        """``work_dir/backends/python`` with the backend files, copied only if missing/stale."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        sources = [
            root / "tritonserver" / "backends" / "python" / "libtriton_python.so",
            root / "tritonserver" / "backends" / "python" / "triton_python_backend_utils.py",
            root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
        ]
        target = self.work_dir / "backends" / "python"
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            if not source.is_file():
                raise TritonStartError(
                    f"{source} is missing: the {_PYTRITON_PACKAGE} wheel has no Python-backend "
                    f"files for Python {version}"
                )
            dest = target / source.name
            if not dest.is_file() or not filecmp.cmp(source, dest, shallow=True):
                tmp = dest.with_name(dest.name + ".tmp")
                shutil.copy2(source, tmp)
                tmp.replace(dest)
        return target.parent

    def _environment(self, root: Path) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
        lib_dirs = [
            str(sysconfig.get_config_var("LIBDIR") or ""),
            str(root.parent / "nvidia_pytriton.libs"),
            env.get("LD_LIBRARY_PATH", ""),
        ]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in lib_dirs if d)
        return env

    def _command(self, binary: Path, backend_dir: Path, ports: tuple[int, int, int]) -> list[str]:
        http, grpc, metrics = ports
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--cache-directory={self.work_dir / 'cache'}",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--exit-on-error=false",
            "--strict-readiness=false",
            "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={max(1, int(self.stop_timeout_s) - 5)}",
            f"--log-verbose={self.log_verbose}",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics}",
            *self.extra_args,
        ]

    def _wait_ready(self, process: subprocess.Popen[bytes], http_port: int) -> bool:
        """True once ready; False if the process exited first. Raises on timeout."""
        url = f"http://127.0.0.1:{http_port}/v2/health/ready"
        # No proxies: an http_proxy in the environment must not intercept a loopback check.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with opener.open(url, timeout=1.0) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError

    def start(self) -> LocalTritonServer:
        """Start the server and return ``self`` once ``/v2/health/ready`` answers 200."""
        if self.is_running():
            return self
        root = _pytriton_root()
        binary = root / "tritonserver" / "bin" / "tritonserver"
        if not binary.is_file():
            raise TritonStartError(
                f"{binary} is missing: reinstall {_PYTRITON_PACKAGE} (a Linux wheel ships it)"
            )
        if isinstance(self.model_repository, Path) and not self.model_repository.is_dir():
            raise TritonStartError(f"model repository {self.model_repository} does not exist")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "cache").mkdir(exist_ok=True)
        backend_dir = self._backend_directory(root)
        env = self._environment(root)

        # A restart reuses the previous ports first, like a pod restarting behind its Service:
        # clients configured with the old URL reconnect instead of needing new settings.
        previous = self._ports
        reuse = previous is not None
        for attempt in range(1, _START_ATTEMPTS + 1):
            if reuse and previous is not None:
                ports = previous
            else:
                ports = (_free_port(), _free_port(), _free_port())
            if len(set(ports)) != 3:
                continue
            with self.log_path.open("wb") as log:
                process = subprocess.Popen(
                    self._command(binary, backend_dir, ports),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.work_dir,
                    start_new_session=True,  # own process group: stop() reaches the stubs too
                    preexec_fn=_reset_signals,  # SIGTERM/SIGINT may be inherited as ignored
                )
            self._process = process
            self._ports = ports
            self._finalizer = weakref.finalize(self, _finalize_process, process, self._shm_prefix)
            try:
                ready = self._wait_ready(process, ports[0])
            except TimeoutError:
                tail = _tail(self.log_path)
                self.stop()
                raise TritonStartError(
                    f"tritonserver (pid {process.pid}) was not ready after "
                    f"{self.startup_timeout_s:g}s; last log lines from {self.log_path}:\n{tail}"
                ) from None
            except BaseException:  # e.g. KeyboardInterrupt: never leave a half-started server
                self.stop()
                raise
            if ready:
                return self
            tail = _tail(self.log_path)
            code = process.returncode
            self.stop()
            port_busy = any(marker in tail.lower() for marker in _PORT_BUSY_MARKERS)
            crashed = code is not None and code < 0  # killed by a signal, e.g. SIGABRT
            if port_busy and self._fixed_ports:
                raise TritonStartError(
                    f"tritonserver could not bind its fixed ports {ports} (http, grpc, metrics): "
                    f"one is in use by another process; free it or choose other ports. Last log "
                    f"lines from {self.log_path}:\n{tail}"
                )
            if attempt < _START_ATTEMPTS and (port_busy or crashed):
                reuse = reuse and not port_busy  # keep the addresses unless they are taken
                continue
            raise TritonStartError(
                f"tritonserver exited with code {code} during start-up (attempt {attempt}); "
                f"last log lines from {self.log_path}:\n{tail}"
            )
        raise TritonStartError(f"could not find free ports after {_START_ATTEMPTS} attempts")

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL; always reaps."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                kill_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    kill_group(process, signal.SIGKILL)
                    process.wait(timeout=10)
            # Stubs normally exit with the server; make sure none outlives it.
            kill_group(process, signal.SIGKILL)
            remove_backend_shm(self._shm_prefix)
        finally:
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self._process = None

    def kill(self) -> None:
        """Crash the server (SIGKILL to its process group, then reap), for fault drills.

        Unlike ``stop()`` nothing is graceful: in-flight requests die with their connections,
        like an OOM kill or a lost node. The ports are kept, so ``start()`` afterwards brings
        the server back on the same addresses (a pod restarting behind its Service).
        """
        process = self._process
        if process is None:
            return
        kill_group(process, signal.SIGKILL)
        process.wait(timeout=10)
        self.stop()  # reaps, detaches the finalizer; idempotent on a dead process

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"grpc={self.grpc_url}" if self._ports is not None else "not started"
        return f"LocalTritonServer({self.model_repository}, {where}, pid={self.pid})"
