"""A model's life end to end (issue 9), on a real MLflow registry, Triton, DuckDB and Dagster.

One high-risk model lives through the story the issue tells, each chapter a module fixture
that builds on the one before (a test asking for a later chapter runs the earlier ones):

1. v1 passes the gate but, high risk and unapproved, only waits as challenger; the review job
   approves it, the promote job makes it champion and Triton serves it;
2. more labels arrive; v2 passes the gate (non-inferior to v1 on the same newest rows),
   becomes challenger, is scored in shadow and on the canary share and compared; promoting it
   before approval is refused; ``aios-dagster models approve`` then the promote job make it
   champion;
3. v3, trained on shuffled labels, fails the blocking gate: nothing is deployed;
4. v4 passes, is approved and promoted; the rollback job restores v2 (the second version) in
   the registry and on Triton, and the alias history says which version was champion when.

Run with ``-s`` to see the promotion and rollback times and the shadow overhead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from aios_dagster.cli import main
from aios_dagster.lib.serving.triton import TritonResource
from tests.lifecycle.flow_fixtures import (
    MODEL,
    SCORED_DAY,
    SPEC,
    FlowPlatform,
    serving,
    step_error,
    write_scoring_day,
    write_training,
)
from tests.lifecycle.registry_support import fresh_registry

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("aios-dagster"))
DAY = SCORED_DAY
DAY_ROWS = 3000
SHARE = SPEC.rollout.canary_share
APPROVER = "rita.risk"
CLI_REASON = "shadow agrees with v1 on a whole day; holdout above the floors"
Facts = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def in_canary(record_id: str) -> bool:
    """The design's routing rule, written out independently of the scorer."""
    digest = hashlib.sha256(f"{SPEC.triton_model}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < SHARE


def team_of(platform: FlowPlatform, version: int, x: np.ndarray) -> np.ndarray:
    """The team the registered ``version`` gives each row of ``x``, computed in process."""
    model = platform.registry.load_model(MODEL, version)
    [head] = [h for h in model.heads if h.name == "team"]
    return np.asarray(head.labels)[model.predict_proba(x)["team"].argmax(axis=1)]


def figure(label: str, seconds: float) -> None:
    print(f"\n[lifecycle figures] {label}: {seconds:.3f} s")


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, triton_server, triton_repository: Path
) -> Iterator[FlowPlatform]:
    folder = tmp_path_factory.mktemp("lifecycle_flow")
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("AIOS_DATA_DIR", str(folder / "data"))
        for var in ("AIOS_MLFLOW_TRACKING_URI", "AIOS_MLFLOW_ARTIFACT_LOCATION"):
            env.delenv(var, raising=False)
        yield FlowPlatform(
            folder,
            triton_repository,
            fresh_registry(folder),
            TritonResource(url=triton_server.grpc_url, retry_backoff_s=0.05),
            instance,
        )


def registry_env(platform: FlowPlatform) -> dict[str, str]:
    """What makes an ``aios-dagster`` command read the flow's registry."""
    return {
        "AIOS_MLFLOW_TRACKING_URI": platform.registry.tracking_uri,
        "AIOS_MLFLOW_ARTIFACT_LOCATION": platform.registry.artifact_location,
    }


def terminal(argv: list[str]) -> tuple[int, str]:
    """``aios-dagster`` run in process (the flow's model is declared in Python, not YAML):
    exit status and what it printed, a refusal's one line included."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exc:
            return (1 if exc.code else 0), out.getvalue() + str(exc.code or "")
    return 0, out.getvalue()


def trained(platform: FlowPlatform) -> Facts:
    """Train, evaluate, gate and publish; what the run and the registry then say."""
    result = platform.train()
    gate = platform.gate_evaluation(result)
    facts: Facts = {
        "success": result.success,
        "gate_passed": gate.passed,
        "gate_description": gate.description or "",
        "gate_metadata": {k: v.value for k, v in gate.metadata.items()},
        "champion": platform.registry.get_alias(MODEL, "champion"),
        "challenger": platform.registry.get_alias(MODEL, "challenger"),
        "published": (
            platform.materialized(result, f"{MODEL}_published")
            if result.asset_materializations_for_node(f"{MODEL}_published")
            else None
        ),
        "error": step_error(result),
    }
    facts["version"] = int(facts["gate_metadata"]["registry_version"])
    return facts


def promote_job(platform: FlowPlatform, reason: str) -> tuple[float, dict[str, str], str]:
    """Launch the promote job; its wall time, what Triton then announces and whose answer."""
    result, seconds = platform.run_job("promote", actor="mo.ml-lead", reason=reason)
    assert result.success, step_error(result)
    served = serving(platform.triton)
    return seconds, served, platform.answering_version(int(served["champion"]))


@pytest.fixture(scope="module")
def first(platform: FlowPlatform) -> Facts:
    write_training(platform.warehouse_path, 1500)
    facts: Facts = {"at_start": now()}
    facts["trained"] = trained(platform)
    facts["features"] = write_scoring_day(platform.warehouse_path, DAY, DAY_ROWS)
    unapproved = dg.materialize(
        [platform.predictions],
        resources=platform.resources,
        instance=platform.instance,
        partition_key=DAY.isoformat(),
        raise_on_error=False,
    )
    facts["unapproved_scoring"] = (unapproved.success, step_error(unapproved))
    facts["at_waiting"] = now()
    review, _ = platform.run_job(
        "review",
        version=1,
        decision="approved",
        actor=APPROVER,
        reason="holdout metrics above every floor",
    )
    assert review.success, step_error(review)
    seconds, facts["serving"], facts["answered"] = promote_job(platform, "first approved version")
    facts["at_champion"] = now()
    figure("promotion v1 (promote job, registry + Triton)", seconds)
    return facts


@pytest.fixture(scope="module")
def second(first: Facts, platform: FlowPlatform) -> Facts:
    write_training(platform.warehouse_path, 2250)
    facts: Facts = {"trained": trained(platform), "serving_challenger": serving(platform.triton)}
    facts["features"] = first["features"]
    dataset = f"{MODEL}_predictions"
    facts["predictions_meta"], predict_s = platform.score(platform.predictions, DAY)
    facts["decisions"] = platform.lake.read(dataset).sort_by("record_id")
    facts["shadow_meta"], shadow_s = platform.score(platform.shadow, DAY)
    facts["comparison_meta"], _ = platform.score(platform.comparison, DAY)
    platform.score(platform.predictions, DAY)  # a re-run of the same day
    facts["decisions_rerun"] = platform.lake.read(dataset).sort_by("record_id")
    figure(f"predictions asset run, {DAY_ROWS} emails", predict_s)
    figure(f"shadow asset run, {DAY_ROWS} emails", shadow_s)
    figure("shadow overhead (shadow run / predictions run)", shadow_s / predict_s)

    refused, _ = platform.run_job("promote", actor="mo.ml-lead", reason="shadow looks fine")
    facts["refused"] = (refused.success, step_error(refused))
    facts["champion_after_refusal"] = platform.registry.get_alias(MODEL, "champion")
    facts["cli"] = subprocess.run(
        [CLI, "models", "approve", MODEL, "2", "--reason", CLI_REASON, "--actor", APPROVER],
        env={**os.environ, **registry_env(platform)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds, facts["serving"], facts["answered"] = promote_job(platform, "approved; shadow agrees")
    facts["at_champion"] = now()
    figure("promotion v2 (promote job, registry + Triton)", seconds)
    return facts


@pytest.fixture(scope="module")
def bad(second: Facts, platform: FlowPlatform) -> Facts:
    write_training(platform.warehouse_path, 2250, shuffle_training_labels=True)
    facts: Facts = {"trained": trained(platform), "serving": serving(platform.triton)}
    version = facts["trained"]["version"]
    facts["gate_tag"] = platform.registry.version_tags(MODEL, version).get("gate")
    alone = dg.materialize(
        platform.lifecycle_assets,
        selection=[f"{MODEL}_published"],
        resources=platform.resources,
        instance=platform.instance,
        raise_on_error=False,
    )
    facts["publish_alone"] = (alone.success, step_error(alone))
    facts["at_rejected"] = now()
    return facts


@pytest.fixture(scope="module")
def rolled_back(bad: Facts, platform: FlowPlatform) -> Facts:
    write_training(platform.warehouse_path, 3000)
    facts: Facts = {"trained": trained(platform)}
    version = facts["trained"]["version"]
    review, _ = platform.run_job(
        "review", version=version, decision="approved", actor=APPROVER, reason="more data"
    )
    assert review.success, step_error(review)
    _, facts["serving_promoted"], _ = promote_job(platform, "trained on more labels")
    facts["at_promoted"] = now()

    started = time.perf_counter()
    result, job_s = platform.run_job("rollback", actor="oncall", reason="complaints about v4")
    assert result.success, step_error(result)
    answered = ""
    while answered != "2" or serving(platform.triton)["champion"] != "2":
        answered = platform.answering_version(2)
        assert time.perf_counter() - started < 30, "the rolled-back version never answered"
    facts["rollback_seconds"] = time.perf_counter() - started
    [observation] = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    facts["rollback_record"] = {k: v.value for k, v in observation.metadata.items()}
    facts["serving"] = serving(platform.triton)
    facts["at_rolled_back"] = now()
    facts["champion_history"] = platform.registry.alias_history(MODEL, "champion")
    facts["predictions_meta"], _ = platform.score(platform.predictions, DAY)
    facts["decisions"] = platform.lake.read(f"{MODEL}_predictions")
    figure("rollback job alone", job_s)
    figure("rollback until the restored version answers on Triton", facts["rollback_seconds"])
    return facts


def test_a_high_risk_first_version_waits_for_approval_then_serves(first: Facts) -> None:
    trained = first["trained"]
    assert trained["success"], trained["error"]
    assert trained["version"] == 1 and trained["gate_passed"]
    # High risk and nobody approved it: gated, but not champion.
    assert (trained["champion"], trained["challenger"]) == (None, 1)
    assert trained["published"]["champion"] == "none"
    assert "awaiting a person's approval" in trained["published"]["notes"]
    assert first["serving"] == {"champion": "1", "challenger": "", "canary_share": "0.0"}
    assert first["answered"] == "1"


def test_an_unapproved_first_version_decides_no_email(first: Facts, platform) -> None:
    """Before approval nothing may decide: scoring a day fails, no decision is written."""
    success, message = first["unapproved_scoring"]
    assert not success
    assert MODEL in message, message
    assert not platform.lake.dataset_dir(f"{MODEL}_predictions").exists()


def test_the_second_version_passes_the_gate_shadows_and_needs_approval(
    second: Facts, platform: FlowPlatform
) -> None:
    trained = second["trained"]
    assert trained["success"], trained["error"]
    assert trained["version"] == 2 and trained["gate_passed"]
    assert trained["gate_metadata"]["champion_version"] == 1
    assert "non-inferiority" in trained["gate_metadata"]["rules"]
    assert (trained["champion"], trained["challenger"]) == (1, 2)
    assert second["serving_challenger"] == {
        "champion": "1",
        "challenger": "2",
        "canary_share": str(SHARE),
    }

    # Shadow: every email of the day scored by v2 apart; compared with v1 on the same emails.
    shadow, compared = second["shadow_meta"], second["comparison_meta"]
    assert shadow["challenger_version"] == "2" and shadow["dagster/row_count"] == DAY_ROWS
    canary = sum(in_canary(r) for r in second["features"].column("id").to_pylist())
    assert compared["canary_rows"] == canary
    assert compared["dagster/row_count"] == DAY_ROWS - canary
    x = SPEC.build_matrix(second["features"])
    labels = {v: team_of(platform, v, x) for v in (1, 2)}
    kept = ~np.array([in_canary(r) for r in second["features"].column("id").to_pylist()])
    agreement = (labels[1] == labels[2])[kept].mean()
    assert compared["agreement_team"] == pytest.approx(agreement, abs=1e-6)
    assert 0.8 < agreement < 1.0  # two good models of one rule, trained on different rows

    success, message = second["refused"]
    assert not success
    assert f"{MODEL} v2 needs a person's approval before promotion" in message
    assert second["champion_after_refusal"] == 1

    cli = second["cli"]
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith(f"{MODEL} v2 approved by {APPROVER} at ")
    assert second["serving"] == {"champion": "2", "challenger": "", "canary_share": "0.0"}
    assert second["answered"] == "2"
    assert platform.registry.get_alias(MODEL, "champion") == 2


def test_decisions_name_the_deciding_version_and_the_canary_is_stable(second: Facts) -> None:
    """v1 champion, v2 challenger on the canary share: each row says who decided it."""
    decisions = second["decisions"]
    ids = decisions.column("record_id").to_pylist()
    assert len(ids) == DAY_ROWS and len(set(ids)) == DAY_ROWS
    canary = [in_canary(r) for r in ids]
    assert decisions.column("route").to_pylist() == ["canary" if c else "champion" for c in canary]
    assert decisions.column("model_version").to_pylist() == ["2" if c else "1" for c in canary]
    # The share is the configured one within four binomial standard deviations.
    sd = (SHARE * (1 - SHARE) / DAY_ROWS) ** 0.5
    assert abs(sum(canary) / DAY_ROWS - SHARE) < 4 * sd
    assert second["predictions_meta"]["canary_rows"] == sum(canary)
    # A re-run of the day sends every email to the same version again.
    rerun = second["decisions_rerun"]
    for column in ("record_id", "route", "model_version", "decision", "input_hash"):
        assert rerun.column(column).to_pylist() == decisions.column(column).to_pylist(), column


def test_a_bad_version_fails_the_gate_and_is_never_deployed(bad: Facts, platform) -> None:
    trained = bad["trained"]
    assert trained["version"] == 3
    assert not trained["gate_passed"]
    description = trained["gate_description"]
    # Shuffled labels: below the floors, and below the champion by more than the margin.
    assert description.startswith("gate failed:"), description
    assert "< floor" in description and "< champion" in description, description
    assert bad["gate_tag"] == "failed"
    # The blocking check stopped the publish step in the same run.
    assert trained["published"] is None
    assert (trained["champion"], trained["challenger"]) == (2, None)
    assert bad["serving"] == {"champion": "2", "challenger": "", "canary_share": "0.0"}
    # Launched on its own, publishing refuses the failed version.
    success, message = bad["publish_alone"]
    assert not success
    assert f"{MODEL} v3: gate is failed" in message, message
    card = platform.registry.read_version_artifact(MODEL, 3, "model_card.md").decode()
    assert "failed" in card.lower()


def test_rollback_restores_the_second_version_in_registry_and_triton(
    rolled_back: Facts, platform: FlowPlatform
) -> None:
    assert rolled_back["trained"]["version"] == 4
    assert rolled_back["serving_promoted"]["champion"] == "4"
    record = rolled_back["rollback_record"]
    assert (record["action"], record["from_version"], record["to_version"]) == ("rollback", 4, 2)
    assert (record["actor"], record["reason"]) == ("oncall", "complaints about v4")
    assert rolled_back["serving"]["champion"] == "2"
    assert platform.registry.get_alias(MODEL, "champion") == 2
    assert rolled_back["rollback_seconds"] < 30
    # The next day's decisions come from the restored version.
    versions = set(rolled_back["decisions"].column("model_version").to_pylist())
    assert versions == {"2"}
    assert rolled_back["predictions_meta"]["canary_rows"] == 0


def test_alias_history_says_which_version_was_champion_when(
    first: Facts, second: Facts, bad: Facts, rolled_back: Facts, platform: FlowPlatform
) -> None:
    at = platform.registry.version_at
    expected = [
        (first["at_start"], None),
        (first["at_waiting"], None),  # v1 gated but not approved: no champion yet
        (first["at_champion"], 1),
        (second["at_champion"], 2),
        (bad["at_rejected"], 2),
        (rolled_back["at_promoted"], 4),
        (rolled_back["at_rolled_back"], 2),
    ]
    assert [(when, at(MODEL, "champion", when)) for when, _ in expected] == expected
    history = rolled_back["champion_history"]
    assert [e.version for e in history] == [1, 2, 4, 2]
    assert all(e.actor and e.reason for e in history)
    # The same question from a terminal.
    answer = subprocess.run(
        [CLI, "models", "history", MODEL, "--at", second["at_champion"].isoformat()],
        env={**os.environ, **registry_env(platform)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith(f"{MODEL} v2 was champion at "), answer.stdout


@pytest.fixture(scope="module")
def by_terminal(
    rolled_back: Facts,
    platform: FlowPlatform,
    triton_server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Facts:
    """The on-call engineer's commands: promote v4 again, roll back twice, try the bad v3."""
    data = tmp_path_factory.mktemp("terminal_data")
    # The command's data folder holds the platform's Triton repository and lake.
    (data / "model_repository").symlink_to(platform.repository)
    (data / "lake").symlink_to(platform.lake.root)
    facts: Facts = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIOS_DATA_DIR", str(data))
        for name, value in registry_env(platform).items():
            env.setenv(name, value)
        env.setenv("AIOS_TRITON_GRPC_URL", triton_server.grpc_url)
        env.setattr("aios_dagster.cli_rollout.model_spec", lambda settings, name: SPEC)
        audit = ["--actor", "oncall", "--reason"]
        for step, argv in (
            ("promote_v4", ["promote", MODEL, "--version", "4", *audit, "v4 fixed"]),
            ("rollback", ["rollback", MODEL, *audit, "v4 still wrong"]),
            ("rollback_again", ["rollback", MODEL, *audit, "back to the first"]),
            ("promote_v3", ["promote", MODEL, "--version", "3", *audit, "try the bad one"]),
        ):
            started = time.perf_counter()
            facts[step] = (*terminal(["models", *argv]), time.perf_counter() - started)
            facts[f"{step}_serving"] = serving(platform.triton)
    figure("rollback command (registry + Triton)", facts["rollback"][2])
    return facts


def test_promote_and_rollback_are_one_command_each(
    by_terminal: Facts, platform: FlowPlatform
) -> None:
    code, out, _ = by_terminal["promote_v4"]
    assert code == 0, out
    assert out.startswith(f"{MODEL}: promote v2 -> v4 by oncall in "), out
    assert by_terminal["promote_v4_serving"]["champion"] == "4"
    code, out, _ = by_terminal["rollback"]
    assert code == 0, out
    assert out.startswith(f"{MODEL}: rollback v4 -> v2 by oncall in "), out
    assert by_terminal["rollback_serving"]["champion"] == "2"
    # A second rollback walks further back instead of returning to v4.
    code, out, _ = by_terminal["rollback_again"]
    assert code == 0, out
    assert out.startswith(f"{MODEL}: rollback v2 -> v1 by oncall in "), out
    assert by_terminal["rollback_again_serving"]["champion"] == "1"
    assert platform.answering_version(1) == "1"
    # The failed version is refused in one line and nothing moves.
    code, out, _ = by_terminal["promote_v3"]
    assert code == 1
    assert "v3: the gate has not passed (gate: failed)" in out, out
    assert by_terminal["promote_v3_serving"]["champion"] == "1"
    assert platform.registry.get_alias(MODEL, "champion") == 1
    last = platform.registry.alias_history(MODEL, "champion")[-1]
    assert (last.version, last.actor, last.reason) == (1, "oncall", "rollback: back to the first")
