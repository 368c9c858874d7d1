"""deploy/Dockerfile: its shape (read from the file: no Docker engine runs here), and its entry
point run outside Docker, as the image would run it: a code server that loads the definitions
with the Helm values' environment, checked over gRPC by `dagster definitions validate`."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, REPO, default_signals, helm_values, production_env
from tests.deploy.support import user_deployment as code_location
from tests.net import free_port

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT_S = 120


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def commands(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Instructions per stage; comments dropped, continuation lines joined."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    stages: list[Stage] = []
    for instruction in "\n".join(lines).replace("\\\n", " ").splitlines():
        if not instruction.strip():
            continue
        keyword, _, arg = instruction.strip().partition(" ")
        keyword, arg = keyword.upper(), arg.strip()
        if keyword == "FROM":
            words = arg.split()
            named = len(words) == 3 and words[1].upper() == "AS"
            stages.append(Stage(base=words[0], name=words[2] if named else None))
        else:
            stages[-1].instructions.append((keyword, arg))
    return stages


def image_cmd() -> list[str]:
    (cmd,) = parse_dockerfile(DEPLOY / "Dockerfile")[-1].commands("CMD")
    return json.loads(cmd)  # exec form: no shell between the runtime and dagster


def test_dockerfile_builds_in_stages_from_the_lock() -> None:
    build, runtime = parse_dockerfile(DEPLOY / "Dockerfile")
    assert build.name and runtime.name
    runs = " ".join(build.commands("RUN"))
    assert "uv sync --frozen --no-dev" in runs
    # The manifest dagster-dbt needs at load time is made at build, after the code is in.
    assert "dbt parse" in runs
    assert runs.index("dbt parse") > runs.rindex("uv sync")
    copied = [shlex.split(c)[0] for c in runtime.commands("COPY")]
    assert copied == [f"--from={build.name}"], "the runtime stage takes only the build's output"
    assert not any("uv" in r.split() for r in runtime.commands("RUN")), "no build tools at run"


def test_image_runs_as_a_numeric_non_root_user() -> None:
    runtime = parse_dockerfile(DEPLOY / "Dockerfile")[-1]
    *_, user = runtime.commands("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0)
    # The same uid the pods declare, so runAsNonRoot holds and the data volume is writable.
    assert code_location(helm_values())["podSecurityContext"]["runAsUser"] == int(uid)


def test_entry_point_is_the_code_server_the_chart_configures() -> None:
    runtime = parse_dockerfile(DEPLOY / "Dockerfile")[-1]
    # An ENTRYPOINT would receive the run launcher's `dagster api execute_run` as arguments.
    assert not runtime.commands("ENTRYPOINT")
    cmd = image_cmd()
    assert cmd[:3] == ["dagster", "api", "grpc"]
    location = code_location(helm_values())
    port = cmd[cmd.index("-p") + 1]
    assert int(port) == location["port"] and port in runtime.commands("EXPOSE")
    module_args = cmd[cmd.index("-m") : cmd.index("-m") + 2]
    assert module_args == location["dagsterApiGrpcArgs"] == ["-m", "aios_dagster.definitions"]


def _wait_for_port(server: subprocess.Popen[str], port: int) -> None:
    """The server binds its port after loading the definitions (it exits if they fail)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"code server exited {server.returncode}:\n{output[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"code server did not listen on {port} within {SERVER_START_TIMEOUT_S}s")


def test_entry_point_loads_the_definitions(tmp_path: Path) -> None:
    manifest = REPO / "dbt_project" / "target" / "manifest.json"
    assert manifest.is_file(), "run `make manifest` first (the image runs dbt parse at build)"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        **production_env(tmp_path / "data"),
        # What the image's ENV sets, with the checkout in the place of /app.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIOS_PROJECT_DIR": str(REPO),
        "DAGSTER_HOME": str(dagster_home),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    port = free_port()
    cmd = image_cmd()
    # Loopback and a free port: the image's 0.0.0.0:3030 is for the pod network.
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    cmd[cmd.index("-p") + 1] = str(port)
    server = subprocess.Popen(
        cmd,
        cwd=REPO,  # the image's WORKDIR
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_signals,
    )
    try:
        _wait_for_port(server, port)
        workspace = tmp_path / "workspace.yaml"
        grpc_server = {"host": "127.0.0.1", "port": port, "location_name": "aios_dagster"}
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc_server}]}))
        validate = subprocess.run(
            [str(VENV_BIN / "dagster"), "definitions", "validate", "-w", str(workspace)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SERVER_START_TIMEOUT_S,
            preexec_fn=default_signals,
        )
        output = validate.stdout + validate.stderr
        assert validate.returncode == 0, output[-4000:]
        assert "Validation successful for code location aios_dagster" in output
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_local() -> None:
    """.dockerignore (read as gitignore patterns, the same rules for these): every tracked file
    under a COPY source is sent to the builder; the venv, data, artefacts and the dbt target
    of this machine are not."""
    import pathspec

    ignore = pathspec.PathSpec.from_lines(
        "gitwildmatch", (REPO / ".dockerignore").read_text().splitlines()
    )
    build = parse_dockerfile(DEPLOY / "Dockerfile")[0]
    sources = [src for c in build.commands("COPY") for src in shlex.split(c)[:-1]]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for source in sources:
        under = [f for f in tracked if f == source or f.startswith(source.rstrip("/") + "/")]
        assert under, f"COPY {source}: nothing tracked there"
        left_out = [f for f in under if ignore.match_file(f)]
        assert not left_out, f".dockerignore leaves out files the image needs: {left_out[:5]}"
    for local in (
        ".venv/bin/python",
        "data/lake/raw_emails/part.parquet",
        "test-artifacts/ui/dagster.png",
        "dbt_project/target/manifest.json",
        "aios_dagster/__pycache__/cli.cpython-311.pyc",
        "tests/conftest.py",
    ):
        assert ignore.match_file(local), f"{local} would be sent to the builder"
