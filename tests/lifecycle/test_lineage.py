"""Lineage: what a version was made from, found from the project itself."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.lib.lifecycle.lineage import (
    UNKNOWN,
    Lineage,
    collect_lineage,
    contract_versions,
    dbt_manifest_hash,
    git_commit,
    upstream_sources,
)
from aios_dagster.settings import Settings
from tests.lifecycle.registry_support import lineage_for, tiny_model


def _manifest(path: Path, *, sql_checksum: str = "c1", generated_at: str = "t0") -> Path:
    path.write_text(
        json.dumps(
            {
                "metadata": {"generated_at": generated_at, "invocation_id": generated_at},
                "nodes": {
                    "model.p.training_set": {"name": "training_set", "checksum": {"checksum": "a"}},
                    "model.p.features": {
                        "name": "features",
                        "checksum": {"checksum": sql_checksum},
                    },
                    "model.p.unrelated": {"name": "unrelated", "checksum": {"checksum": "z"}},
                },
                "sources": {
                    "source.p.lake.raw_emails": {"identifier": "raw_emails", "relation_name": "e"},
                    "source.p.lake.raw_crm": {"identifier": "raw_crm", "relation_name": "c"},
                },
                "parent_map": {
                    "model.p.training_set": ["model.p.features"],
                    "model.p.features": ["source.p.lake.raw_emails"],
                    "model.p.unrelated": ["source.p.lake.raw_crm"],
                },
            }
        )
    )
    return path


def test_lineage_round_trips_through_json() -> None:
    lineage = lineage_for(tiny_model(1))
    assert Lineage.from_json(lineage.to_json()) == lineage
    tags = lineage.version_tags()
    assert tags["content_hash"] == tiny_model(1).content_hash()
    assert tags["train_window"] == "2026-11-09T00:00:00 .. 2026-11-19T23:00:00"


def test_manifest_hash_ignores_reparsing_but_not_a_changed_model(tmp_path: Path) -> None:
    first = dbt_manifest_hash(_manifest(tmp_path / "a.json", generated_at="t0"))
    reparsed = dbt_manifest_hash(_manifest(tmp_path / "b.json", generated_at="t1"))
    edited = dbt_manifest_hash(_manifest(tmp_path / "c.json", sql_checksum="c2"))
    assert first == reparsed != edited
    assert dbt_manifest_hash(tmp_path / "missing.json") == UNKNOWN


def test_upstream_sources_follow_the_parent_map(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.json")
    assert upstream_sources(manifest, "training_set") == ["raw_emails"]
    assert upstream_sources(manifest, "unrelated") == ["raw_crm"]


def test_contract_versions_hash_the_reviewed_suites(tmp_path: Path) -> None:
    (tmp_path / "emails.json").write_text('{"expectations": []}')
    expected = hashlib.sha256(b'{"expectations": []}').hexdigest()
    assert contract_versions(tmp_path, ["emails", "emails"]) == {"emails": expected}
    with pytest.raises(FileNotFoundError, match="contract 'crm' has no suite"):
        contract_versions(tmp_path, ["crm"])


def test_git_commit_in_and_outside_a_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == UNKNOWN
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (repo / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("ignored")
    assert git_commit(repo) == head
    (repo / "a.txt").write_text("2")
    assert git_commit(repo) == f"{head}+dirty"


def test_collect_lineage_finds_the_contracts_of_the_training_inputs(tmp_path: Path) -> None:
    """From the project's real dbt manifest and connector declarations."""
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)})
    spec = load_catalog(settings.models_dir)["email_router"]
    lineage = collect_lineage(
        spec,
        settings=settings,
        train_window=(datetime(2026, 11, 9, 8), datetime(2026, 11, 19, 17)),
        holdout_window=(datetime(2026, 11, 19, 18), datetime(2026, 11, 22, 9)),
        rows_train=800,
        rows_holdout=200,
        content_hash="h" * 64,
        run_id="dagster-run-1",
    )
    assert lineage.train_window == ("2026-11-09T08:00:00", "2026-11-19T17:00:00")
    assert lineage.features == spec.feature_columns
    # training_set <- email_features <- the four connectors' lake datasets (+ text features,
    # made by the project's own asset, which has no contract).
    assert sorted(lineage.contract_versions) == [
        "customers",
        "emails",
        "routing_labels",
        "transactions",
    ]
    suite = settings.expectations_dir / "emails.json"
    assert lineage.contract_versions["emails"] == hashlib.sha256(suite.read_bytes()).hexdigest()
    assert lineage.dbt_manifest_hash == dbt_manifest_hash(
        settings.dbt_project_dir / "target" / "manifest.json"
    )
    assert lineage.dbt_manifest_hash != UNKNOWN
    assert "email_text_features" in lineage.extra["source_datasets"]
    assert lineage.git_commit == git_commit(settings.project_dir) != UNKNOWN
