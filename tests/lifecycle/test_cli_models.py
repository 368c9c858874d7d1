"""``aios-dagster models ...`` and ``aios-dagster mlflow-ui`` as a user meets them.

The ``models`` commands run in-process through ``cli.main`` (what the console script calls),
so each test does not pay MLflow's import again; ``mlflow-ui`` runs as the real console script
and serves a real MLflow server, asked over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aios_dagster.cli import main
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from tests.lifecycle.registry_support import fresh_registry, register
from tests.net import free_port

CLI = str(Path(sys.executable).with_name("aios-dagster"))


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("AIOS_DATA_DIR", str(data))
    monkeypatch.setenv("USER", "tester")
    for var in ("AIOS_MLFLOW_TRACKING_URI", "AIOS_MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(var, raising=False)
    return data


@pytest.fixture
def registry(data: Path) -> ModelRegistry:
    """The embedded registry where the settings look: <data>/mlflow."""
    return fresh_registry(data)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    main(list(args))
    return capsys.readouterr().out


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one-line message a failing command exits with."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    message = str(exc.value.code)
    assert len(message.splitlines()) == 1, message
    return message


def test_list_shows_versions_aliases_and_decisions(registry, capsys) -> None:
    register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    registry.set_version_tags("router", 2, {"gate": "passed"})
    registry.record_decision("router", 2, "approved", actor="bob", reason="ok")
    lines = run(capsys, "models", "list", "router").splitlines()
    assert lines[0].split()[:2] == ["version", "registered"]
    assert lines[1].split()[0] == "1" and "champion" in lines[1]
    assert lines[2].split()[0] == "2" and "passed" in lines[2] and "approved by bob" in lines[2]
    assert registry.version("router", 2).content_hash[:12] in lines[2]


def test_approve_and_reject_record_who_and_why(registry, capsys) -> None:
    register(registry, 1)
    out = run(capsys, "models", "approve", "router", "1", "--reason", "shadow agrees")
    assert out.startswith("router v1 approved by tester at ")
    assert out.strip().endswith(": shadow agrees")
    run(capsys, "models", "reject", "router", "1", "--reason", "bias", "--actor", "risk")
    assert [(a.decision, a.actor) for a in registry.approvals("router", 1)] == [
        ("approved", "tester"),
        ("rejected", "risk"),
    ]
    message = fails(capsys, "models", "approve", "router", "1", "--reason", "please")
    assert message.startswith("aios-dagster models: router v1 was rejected by risk")
    assert "cannot be approved" in message
    message = fails(capsys, "models", "approve", "router", "9", "--reason", "x")
    assert (
        message == "aios-dagster models: router v9 does not exist in the registry (versions: [1])"
    )


def test_a_decision_without_a_reason_is_refused(registry, capsys) -> None:
    register(registry, 1)
    with pytest.raises(SystemExit) as exc:
        main(["models", "approve", "router", "1"])
    assert exc.value.code == 2
    assert "the following arguments are required: --reason" in capsys.readouterr().err
    assert "reason must not be empty" in fails(
        capsys, "models", "approve", "router", "1", "--reason", " "
    )
    assert registry.approvals("router", 1) == []


def test_history_and_which_version_was_champion_at_a_time(registry, capsys) -> None:
    register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    between = datetime.now(UTC)
    registry.set_alias("router", "champion", 2, actor="bob", reason="better")
    registry.set_alias("router", "challenger", 1, actor="bob", reason="shadow the old one")
    lines = run(capsys, "models", "history", "router").splitlines()
    assert len(lines) == 3
    assert "champion" in lines[1] and "v1 -> v2" in lines[1] and "bob: better" in lines[1]
    assert len(run(capsys, "models", "history", "router", "--alias", "champion").splitlines()) == 2
    out = run(capsys, "models", "history", "router", "--at", between.isoformat())
    assert out.startswith(f"router v1 was champion at {between:%Y-%m-%d %H:%M:%S} UTC")
    assert "set by ann: first" in out
    naive_utc = between.replace(tzinfo=None).isoformat()
    assert run(capsys, "models", "history", "router", "--at", naive_utc) == out
    early = run(capsys, "models", "history", "router", "--at", "2020-01-01T00:00:00")
    assert early.strip() == "router: no version was champion at 2020-01-01 00:00:00 UTC"
    assert "is not an ISO time" in fails(capsys, "models", "history", "router", "--at", "today")


def test_show_prints_the_card_or_says_there_is_none(registry, capsys) -> None:
    register(registry, 1)
    out = run(capsys, "models", "show", "router", "1")
    assert out.startswith("router v1 has no model card yet")
    assert "content_hash:" in out
    registry.log_version_artifacts(
        "router", 1, {"model_card.md": "# Model card: router v1\n", "model_card.json": "{}"}
    )
    card = {"model": "router", "version": 1, "lineage": {}, "approvals": []}
    registry.log_version_artifacts("router", 1, {"model_card.json": json.dumps(card)})
    assert run(capsys, "models", "show", "router", "1").startswith("# Model card: router v1\n")
    assert "router v4 does not exist" in fails(capsys, "models", "show", "router", "4")
    assert "no registered model 'other'" in fails(capsys, "models", "list", "other")


def test_reading_without_a_registry_fails_in_one_line_and_creates_nothing(data, capsys) -> None:
    message = fails(capsys, "models", "list", "router")
    assert message.startswith(f"aios-dagster models: no model registry at {data}/mlflow/mlflow.db")
    assert "mlflow-ui" in fails(capsys, "mlflow-ui", "--port", "1")
    assert list(data.iterdir()) == []


def test_every_subcommand_and_option_has_help(capsys) -> None:
    for args in (
        ["models"],
        *[["models", a] for a in ("list", "history", "show", "approve", "reject")],
        ["mlflow-ui"],
    ):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: aios-dagster " + " ".join(args))
        if args[-1] in ("approve", "reject"):
            assert "--reason REASON" in text and "default: $USER" in text


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _processes_serving(data: Path, port: int) -> list[str]:
    """Command lines of live processes started for this UI (server, uvicorn worker, ...)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if str(data) in " ".join(args) or ("--port" in args and str(port) in args):
                found.append(" ".join(args))
    return found


def _default_signals() -> None:
    """Some shells start children with SIGTERM/SIGINT ignored (see STACK-NOTES)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_mlflow_ui_serves_the_registry_on_loopback_and_stops(registry, data: Path) -> None:
    register(registry, 1)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    port = free_port()
    env = {**os.environ, "AIOS_DATA_DIR": str(data)}
    proc = subprocess.Popen(
        [CLI, "mlflow-ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_signals,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/get?name=router"
    try:
        deadline = time.monotonic() + 120
        status, body = 0, {}
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                status, body = _get(url)
                if status == 200:
                    break
            time.sleep(0.5)
        assert status == 200, f"MLflow UI never answered (exit {proc.poll()})"
        model = body["registered_model"]
        assert model["name"] == "router"
        assert {"alias": "champion", "version": "1"} in model["aliases"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200 and "<html" in page.read().decode().lower()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert f"MLflow UI on http://127.0.0.1:{port}" in output
        with pytest.raises(OSError):  # the server and its workers are gone
            _get(url)
        assert _processes_serving(data, port) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
