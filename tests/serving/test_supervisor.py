"""The supervised local Triton of ``aios-dagster dev``: killed, it comes back where it was.

Real ``tritonserver`` processes only. Each test kills the server the way an operator or the
OOM killer would (``kill -9`` of the server's pid alone), then looks at what a user would
notice: the address still serves the model, no backend stub is left running, no shared-memory
region is left in ``/dev/shm``, and the log says what happened.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aios_dagster.lib.serving.launcher import TritonStartError
from aios_dagster.lib.serving.supervisor import TritonSupervisor, read_state
from aios_dagster.lib.serving.triton import TritonResource
from tests.triton_fixtures import PublishFn, assert_matches_model, random_features

SHM = Path("/dev/shm")


def free_ports() -> tuple[int, int, int]:
    socks = [socket.socket() for _ in range(3)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        http, grpc, metrics = (int(sock.getsockname()[1]) for sock in socks)
        return http, grpc, metrics
    finally:
        for sock in socks:
            sock.close()


def group_processes(pgid: int) -> dict[int, str]:
    """pid -> command of the live (non-zombie) processes in a process group."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found[int(stat.parent.name)] = text.split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError, ValueError):
            continue
    return found


def is_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a zombie is dead but never reaped)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_zombie(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s}s")
        time.sleep(0.1)


def shm_regions(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"{prefix}*"))


def serve_check(url: str, published: object, model_name: str) -> None:
    """The model answers at ``url`` with the right numbers."""
    resource = TritonResource(url=url, retry_backoff_s=0.05)
    resource.wait_until_ready(timeout_s=30)
    resource.load_model(model_name)
    x = random_features(64, 8)
    result = resource.infer(model_name, x, published.output_names)  # type: ignore[attr-defined]
    assert_matches_model(result.outputs, published.model, x)  # type: ignore[attr-defined]


def test_killed_server_comes_back_on_the_same_ports_without_leftovers(
    tmp_path: Path, publish_random_model: PublishFn, caplog: pytest.LogCaptureFixture
) -> None:
    repository = tmp_path / "repository"
    published = publish_random_model(repository=repository, model_name="sup", n_features=8)
    caplog.set_level(logging.INFO, logger="aios_dagster.lib.serving.supervisor")
    with TritonSupervisor(repository, tmp_path / "work", free_ports(), backoff_s=0.1) as sup:
        url = sup.grpc_url
        serve_check(url, published, "sup")
        first = sup.server.pid
        assert first is not None
        prefix = sup.server.shm_prefix
        stubs = [p for p, cmd in group_processes(first).items() if p != first]
        assert stubs, "the Python backend stub should run in the server's process group"
        old_regions = shm_regions(prefix)
        assert old_regions, "the stub should hold a /dev/shm region"

        os.kill(first, signal.SIGKILL)  # the server alone, as `kill -9 <pid>` does

        wait_for(lambda: sup.restarts == 1, 60, "the supervisor restarting Triton")
        assert sup.grpc_url == url
        assert sup.server.pid != first
        assert not is_zombie(first), "the dead server was never reaped"
        assert not any(is_alive(p) for p in stubs), f"orphaned stubs still run: {stubs}"
        leaked = set(old_regions) & set(shm_regions(prefix))
        assert not leaked, f"the dead server's /dev/shm regions leaked: {leaked}"
        serve_check(url, published, "sup")
        assert read_state(tmp_path / "work") is not None
    logged = caplog.text
    assert f"pid {first}" in logged and "killed by signal 9" in logged
    assert "Triton restarted" in logged
    assert read_state(tmp_path / "work") is None, "a stopped supervisor leaves no state"


def test_restarts_are_bounded(
    tmp_path: Path, publish_random_model: PublishFn, caplog: pytest.LogCaptureFixture
) -> None:
    repository = tmp_path / "repository"
    publish_random_model(repository=repository, model_name="sup_bounded", n_features=8)
    caplog.set_level(logging.INFO, logger="aios_dagster.lib.serving.supervisor")
    with TritonSupervisor(
        repository, tmp_path / "work", free_ports(), max_restarts=1, backoff_s=0.1
    ) as sup:
        first = sup.server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: sup.restarts == 1, 60, "the first restart")
        second = sup.server.pid
        assert second is not None and second != first
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: sup.gave_up, 30, "the supervisor giving up")
        assert not sup.server.is_running()
        assert sup.restarts == 1
        assert not is_zombie(second)
    assert "not restarting it again" in caplog.text


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from aios_dagster.lib.serving.supervisor import TritonSupervisor
ports = tuple(int(p) for p in sys.argv[3:6])
sup = TritonSupervisor(Path(sys.argv[1]), Path(sys.argv[2]), ports).start()
print("ready", sup.server.pid, flush=True)
time.sleep(600)
"""


def test_next_run_cleans_up_after_a_killed_predecessor_and_keeps_its_ports(
    tmp_path: Path, publish_random_model: PublishFn
) -> None:
    """``make dev`` killed with -9 leaves Triton, its stubs and /dev/shm: the next one tidies."""
    repository = tmp_path / "repository"
    published = publish_random_model(repository=repository, model_name="sup_next", n_features=8)
    work = tmp_path / "work"
    ports = free_ports()
    predecessor = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(repository), str(work), *map(str, ports)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = predecessor.stdout.readline() if predecessor.stdout else ""
        assert line.startswith("ready"), f"predecessor did not start: {line!r}"
        old_server = int(line.split()[1])
        old = group_processes(old_server)
        state = read_state(work)
        assert state is not None
        prefix = str(state["shm_prefix"])
        assert shm_regions(prefix)
        with pytest.raises(TritonStartError, match=f"another supervisor \\(pid {predecessor.pid}"):
            TritonSupervisor(repository, work, ports).start()
        assert is_alive(old_server), "a refused start must not touch the running server"
        predecessor.kill()  # the supervisor dies; its Triton keeps the ports
        predecessor.wait(timeout=10)
        os.kill(old_server, signal.SIGKILL)  # and then the server alone: stubs orphaned
        wait_for(lambda: not is_alive(old_server), 10, "the old server dying")

        with TritonSupervisor(repository, work, ports) as sup:
            assert sup.grpc_url == f"127.0.0.1:{ports[1]}"
            assert not any(is_alive(p) for p in old), f"leftovers still run: {old}"
            assert shm_regions(prefix) == []
            serve_check(sup.grpc_url, published, "sup_next")
    finally:
        if predecessor.poll() is None:
            predecessor.kill()
            predecessor.wait()


def test_busy_fixed_port_is_an_error_naming_it(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    ports = free_ports()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", ports[1]))
        taken.listen()
        sup = TritonSupervisor(repository, tmp_path / "work", ports)
        with pytest.raises(Exception, match=str(ports[1])):
            sup.start()
        sup.stop()
