"""The ``aios-dagster`` command as a user meets it: help, and where it looks for its data.

Each test runs the installed console script in a subprocess from a folder outside the
checkout, with the project's environment variables removed, so what it prints and what it
leaves on disk is exactly what a user would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("aios-dagster"))
COMMANDS = ("generate", "demo", "dev", "explain", "quarantine", "remote")


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "DAGSTER_"))}
    return subprocess.run(
        [CLI, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_top_level_help_lists_every_command_with_plain_text(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout, "reST markup leaked into the description"
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        at = [i for i, line in enumerate(lines) if line.split()[:1] == [command]]
        assert at, f"{command} is not listed in:\n{result.stdout}"
        # argparse wraps a long command name: its help then starts on the next line.
        entry = (lines[at[0]] + " " + lines[at[0] + 1]).split()
        assert len(entry) > 1 and entry[1] not in COMMANDS, f"{command} has no help text"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_has_help_text(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "``" not in text
    before, options = text.split("options:", 1)
    # argparse puts an option's help on its line or the next: each entry needs prose beside
    # its flags and metavars.
    for entry in options.split("\n  -")[1:]:
        tokens = entry.replace(",", " ").split()
        if tokens[0] == "h":
            continue
        prose = [t for t in tokens[1:] if not t.isupper() and not t.startswith(("-", "{"))]
        assert prose, f"{command}: option without help text: -{entry.strip()}"
    if "positional arguments:" in before:
        positionals = before.split("positional arguments:", 1)[1]
        for line in positionals.splitlines():
            if line.startswith("  ") and not line.startswith("   "):
                assert len(line.split()) > 1, f"{command}: argument without help: {line}"


def test_defaults_are_shown(tmp_path: Path) -> None:
    generate = run_cli("generate", "--help", cwd=tmp_path).stdout
    assert "default: 7" in generate  # --seed
    assert "default: 10000" in generate  # --emails-per-week
    dev = run_cli("dev", "--help", cwd=tmp_path).stdout
    assert "default: 3000" in dev
    assert "default: 8001" in dev  # Triton gRPC port, stable across restarts


def test_read_command_elsewhere_without_data_dir_fails_in_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "checkout_without_data"
    project.mkdir()
    for args in (("explain", "email-1"), ("quarantine", "raw_customers")):
        result = run_cli(*args, cwd=elsewhere, env={"AIOS_PROJECT_DIR": str(project)})
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "AIOS_DATA_DIR" in message
    assert tree(elsewhere) == [], "a read-only command wrote into the current folder"
    assert tree(project) == []


def test_explain_finds_the_checkouts_data_folder_and_creates_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "checkout"
    (project / "data").mkdir(parents=True)
    result = run_cli("explain", "email-1", cwd=elsewhere, env={"AIOS_PROJECT_DIR": str(project)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert str(project / "data" / "lake" / "decision_log") in result.stderr
    assert "nothing has been scored yet" in result.stderr
    assert tree(elsewhere) == []
    assert tree(project) == ["data"], "explain created folders in the data folder"


def test_quarantine_reads_without_creating_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_cli("quarantine", "raw_customers", cwd=tmp_path, env={"AIOS_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert '"records": 0' in result.stdout
    assert tree(data) == [], "quarantine without --reprocess created folders"


def test_unknown_connector_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_cli("quarantine", "nope", cwd=tmp_path, env={"AIOS_DATA_DIR": str(data)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "unknown connector 'nope'" in result.stderr


def test_remote_needs_no_data_folder_and_names_an_unreachable_webserver(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = run_cli("remote", "--url", url, "status", "some-run", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and f"webserver at {url}" in message, message
    assert tree(tmp_path) == []
