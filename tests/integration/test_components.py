"""The platform is declared as Dagster Components: `dg` sees all of it, the graph is pinned by a
snapshot, and a mistake in a YAML declaration is reported with its file and field.

Regenerate the snapshot after an intended change to the graph with
``AIOS_UPDATE_SNAPSHOT=1 pytest tests/integration/test_components.py``, and review the diff.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.connectors.component import load_connector
from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("snapshots") / "definitions.json"
VENV_BIN = Path(sys.executable).parent


def graph_snapshot(defs: dg.Definitions) -> dict[str, Any]:
    """What a reviewer should notice changing: keys, groups, kinds, deps, checks, triggers."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "owners": sorted(node.owners),
        }
    checks = {
        k.to_user_string(): {"blocking": graph.get_check_spec(k).blocking}
        for k in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())
    }
    jobs = {}
    for job in sorted(defs.jobs or [], key=lambda j: j.name):
        resolved = defs.resolve_job_def(job.name)
        jobs[job.name] = {
            "partitioned": resolved.partitions_def is not None,
            "assets": sorted(
                k.to_user_string() for k in resolved.asset_layer.executable_asset_keys
            ),
        }
    sensors = {
        s.name: {"jobs": sorted(t.job_name for t in s.targets)}
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    schedules = {
        s.name: {"job": s.job_name, "cron": s.cron_schedule}
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "sensors": sensors,
        "schedules": schedules,
    }


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.from_env({"AIOS_DATA_DIR": str(tmp_path_factory.mktemp("c") / "data")})


@pytest.fixture(scope="module")
def snapshot(settings: Settings) -> dict[str, Any]:
    return graph_snapshot(build_definitions(settings))


def test_graph_matches_the_reviewed_snapshot(snapshot: dict[str, Any]) -> None:
    if os.environ.get("AIOS_UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text()), (
        "the definitions graph changed; if intended, regenerate with AIOS_UPDATE_SNAPSHOT=1"
    )


DG_COMMANDS = {
    "check yaml": ["check", "yaml"],
    "check defs": ["check", "defs"],
    "list components": ["list", "components", "--json"],
    "list defs": ["list", "defs", "--json"],
}


@pytest.fixture(scope="module")
def dg_runs(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every ``dg`` command the tests ask about, run once and side by side: each loads the
    whole code location in its own process, and the rest of the suite leaves a core idle."""
    home = tmp_path_factory.mktemp("dg_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AIOS_DATA_DIR": str(settings.data_dir),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "NO_COLOR": "1",
    }
    running = {
        name: subprocess.Popen(
            [str(VENV_BIN / "dg"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in DG_COMMANDS.items()
    }
    done = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done


@pytest.mark.parametrize("command", ["check yaml", "check defs"])
def test_dg_checks_pass(dg_runs: dict[str, subprocess.CompletedProcess[str]], command: str) -> None:
    done = dg_runs[command]
    assert done.returncode == 0, f"dg {command} failed:\n{done.stdout}\n{done.stderr}"


def test_dg_lists_the_platform_component_types(
    dg_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    done = dg_runs["list components"]
    assert done.returncode == 0, done.stderr
    types = {c["key"] for c in json.loads(done.stdout)["items"]}
    assert {
        "aios_dagster.lib.connectors.component.ConnectorComponent",
        "aios_dagster.lib.model_component.ModelComponent",
    } <= types


def test_dg_list_defs_shows_the_whole_platform(
    dg_runs: dict[str, subprocess.CompletedProcess[str]], snapshot: dict[str, Any]
) -> None:
    done = dg_runs["list defs"]
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {a["asset_key"] for a in listed["assets"]} == set(snapshot["assets"])
    assert {c["key"] for c in listed["asset_checks"]} == set(snapshot["asset_checks"])
    assert {j["name"] for j in listed["jobs"]} == set(snapshot["jobs"])
    assert {s["name"] for s in listed["sensors"]} == set(snapshot["sensors"])
    assert {s["name"] for s in listed["schedules"]} == set(snapshot["schedules"])
    # Each connector's objects point back at the YAML that declares them.
    sources = {s["name"]: s.get("source", "") for s in listed["sensors"]}
    assert sources["raw_emails_sensor"].startswith("aios_dagster/defs/ingest/raw_emails/defs.yaml")


def _package_with(tmp_path: Path, name: str, folder: str, doc: dict[str, Any]) -> Path:
    """A throwaway defs package holding one component declaration."""
    package = tmp_path / name
    (package / "defs" / folder).mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    path = package / "defs" / folder / "defs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _connector_doc(**changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "aios_dagster/defs/ingest/raw_customers/defs.yaml").read_text())
    doc["attributes"].update(changes)
    return doc


def test_a_typo_in_a_connector_names_the_file_and_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _package_with(tmp_path, "typo_kind", "raw_crm", _connector_doc(kind="filez"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Exception) as loaded:
        dg.load_defs(importlib.import_module("typo_kind.defs"), project_root=tmp_path)
    message = "".join(str(e) for e in _chain(loaded.value))
    assert str(path) in message and "kind" in message and "filez" in message

    # the same file read outside Dagster (CLI, benchmarks) says the same
    with pytest.raises(ValueError, match=r"raw_crm/defs\.yaml: invalid connector: kind: "):
        load_connector(path, {"sources_dir": str(tmp_path)})


def test_a_rule_broken_inside_a_connector_names_the_file_and_the_pii_column(
    tmp_path: Path,
) -> None:
    doc = _connector_doc()
    doc["attributes"]["pii"]["email"] = {"action": "tokenize"}  # no token column
    path = _package_with(tmp_path, "typo_pii", "raw_crm", doc)
    with pytest.raises(ValueError, match=r"raw_crm/defs\.yaml.*pii\.email: tokenize needs"):
        load_connector(path, {"sources_dir": str(tmp_path)})


def test_a_typo_in_a_model_names_the_file_and_the_field(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "aios_dagster/defs/models/email_router/defs.yaml").read_text())
    doc["attributes"]["policy"]["min_confidense"] = 0.5
    doc["attributes"]["gate"]["floors"]["queue"]["accuracy"] = 7
    _package_with(tmp_path, "typo_model", "email_router", doc)
    with pytest.raises(ValueError) as raised:
        load_catalog(tmp_path / "typo_model" / "defs")
    message = str(raised.value)
    assert "email_router/defs.yaml" in message
    assert "policy.min_confidense" in message
    assert "gate.floors.queue" in message and "between 0 and 1" in message


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out
