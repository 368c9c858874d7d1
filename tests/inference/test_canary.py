"""Canary routing on a real Triton: a share of records, by a hash of the id, is decided by the
challenger; every decision names the version that decided it; re-runs route the same way."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.inference.audit import explain_record
from aios_dagster.lib.inference.batch import canary_bucket, score
from aios_dagster.lib.inference.microbatch import build_microbatch_asset
from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.scoring import score_day
from aios_dagster.lib.inference.sinks import build_sink_assets
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.deployments import deploy, feature_rows, serve_as_before, write_days
from tests.inference.features import N_FEATURES, resources, spec_for

MODEL = "canary_router"
HEADS = {"team": 4, "urgency": 3}
DAY = date(2026, 11, 2)
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")


def in_canary(model: str, record_id: str, share: float) -> bool:
    """The design's rule, written out independently of the scorer."""
    digest = hashlib.sha256(f"{model}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@pytest.fixture(scope="module")
def served(
    triton_repository: Path, triton_server
) -> tuple[dict[int, LinearHeadsModel], TritonResource]:
    """Versions 1 (champion) and 2 (challenger, other weights) of ``MODEL`` on the server."""
    models = {v: LinearHeadsModel.random(N_FEATURES, HEADS, seed=40 + v) for v in (1, 2)}
    for version, model in models.items():
        assert publish_linear_model(triton_repository, MODEL, model).version == version
    return models, TritonResource(url=triton_server.grpc_url, retry_backoff_s=0.05)


def expected_team(model: LinearHeadsModel, x: np.ndarray) -> list[str]:
    labels = np.asarray(model.heads[0].labels)
    return labels[model.predict_proba(x)["team"].argmax(axis=1)].tolist()


def test_shares_are_within_tolerance_and_follow_the_rule() -> None:
    ids = [f"E-{i:06d}" for i in range(20_000)]
    buckets = np.array([canary_bucket(MODEL, rid) for rid in ids])
    for share in (0.01, 0.1, 0.5):
        assert abs((buckets < share).mean() - share) <= 0.01, share
    assert [b < 0.1 for b in buckets] == [in_canary(MODEL, rid, 0.1) for rid in ids]
    other = np.array([canary_bucket("another_model", rid) for rid in ids])
    # Another model canaries an independent set of emails, not the same 10%.
    assert abs(((buckets < 0.1) & (other < 0.1)).mean() - 0.01) < 0.005


def test_canary_rows_are_decided_by_the_challenger_the_same_way_on_every_run(
    served, triton_repository: Path
) -> None:
    models, triton = served
    deploy(
        triton_repository,
        MODEL,
        models,
        triton,
        champion=1,
        challenger=2,
        share=0.2,
    )
    table, x = feature_rows(DAY, 3000, seed=1)
    spec = spec_for(MODEL)
    decisions, scored = score(spec, table, triton, "run-1")

    ids = decisions.column("record_id").to_pylist()
    canary = np.array([in_canary(MODEL, rid, 0.2) for rid in ids])
    assert 0.18 < canary.mean() < 0.22
    assert decisions.column("route").to_pylist() == np.where(canary, "canary", "champion").tolist()
    assert decisions.column("model_version").to_pylist() == np.where(canary, "2", "1").tolist()
    team = np.where(canary, expected_team(models[2], x), expected_team(models[1], x))
    assert decisions.column("team").to_pylist() == team.tolist()
    assert scored.model_version == "1" and scored.challenger_version == "2"
    assert scored.canary_rows == canary.sum()
    assert scored.requests == 4  # 2,4xx champion rows in 3 requests, 6xx canary rows in 1

    again, _ = score(spec, table, triton, "run-2")
    assert again.column("route").to_pylist() == decisions.column("route").to_pylist()
    assert again.column("team").to_pylist() == decisions.column("team").to_pylist()


def test_without_a_canary_share_the_champion_decides_every_row(
    served, triton_repository: Path
) -> None:
    models, triton = served
    table, x = feature_rows(DAY, 500, seed=2)
    spec = spec_for(MODEL)

    deploy(
        triton_repository,
        MODEL,
        models,
        triton,
        champion=1,
        challenger=2,
        share=0.0,
    )
    decisions, scored = score(spec, table, triton, "run-1")
    assert set(decisions.column("model_version").to_pylist()) == {"1"}  # not the newest
    assert set(decisions.column("route").to_pylist()) == {"champion"}
    assert decisions.column("team").to_pylist() == expected_team(models[1], x)
    assert scored.canary_rows == 0 and scored.requests == 1

    # No deployment parameters: as before the lifecycle, the newest version decides.
    serve_as_before(triton_repository, MODEL, models[2], triton, versions=[1, 2])
    decisions, _ = score(spec, table, triton, "run-2")
    assert set(decisions.column("model_version").to_pylist()) == {"2"}
    assert set(decisions.column("route").to_pylist()) == {"champion"}


class PromotedMidDay(TritonResource):
    """A real server on which the challenger is promoted after the day's first config read."""

    repository: str
    reads: list[int]

    def get_model_config(self, model_name: str) -> dict:
        config = super().get_model_config(model_name)
        self.reads.append(1)
        if len(self.reads) == 1:
            # The challenger becomes champion; the old champion stays loaded as challenger.
            models = {v: LinearHeadsModel.random(N_FEATURES, HEADS, seed=40 + v) for v in (1, 2)}
            deploy(Path(self.repository), model_name, models, self, champion=2, challenger=1)
        return config


def test_a_day_keeps_the_versions_of_its_first_batch(
    served, triton_repository: Path, tmp_path: Path
) -> None:
    models, triton = served
    deploy(
        triton_repository,
        MODEL,
        models,
        triton,
        champion=1,
        challenger=2,
        share=0.3,
    )
    written = write_days(tmp_path / "wh.duckdb", {DAY: 1200})
    res = resources(tmp_path, triton)
    promoting = PromotedMidDay(url=triton.url, repository=str(triton_repository), reads=[])
    day = score_day(
        spec_for(MODEL),
        DAY,
        warehouse=res["warehouse"],
        triton=promoting,
        lake=res["lake"],
        run_id="r",
        batch_rows=300,
    )
    assert len(promoting.reads) == 4  # one config read per batch; the first one pinned the day
    assert (
        promoting.get_model_config(MODEL)["parameters"]["aios_champion_version"]["string_value"]
        == "2"
    )
    rows = res["lake"].read(f"{MODEL}_predictions")
    ids = rows.column("record_id").to_pylist()
    canary = np.array([in_canary(MODEL, rid, 0.3) for rid in ids])
    assert rows.column("model_version").to_pylist() == np.where(canary, "2", "1").tolist()
    assert day.metadata()["model_version"] == "1" and day.metadata()["challenger_version"] == "2"
    assert day.metadata()["canary_rows"] == canary.sum() and day.rows == len(written[DAY][0])


def test_decision_log_sinks_explain_and_micro_batches_carry_the_deciding_version(
    served, triton_repository: Path, tmp_path: Path
) -> None:
    models, triton = served
    deploy(
        triton_repository,
        MODEL,
        models,
        triton,
        champion=1,
        challenger=2,
        share=0.25,
    )
    write_days(tmp_path / "wh.duckdb", {DAY: 400})
    res = resources(tmp_path, triton)
    spec = spec_for(MODEL)
    assets = [build_prediction_asset(spec, PARTITIONS), build_sink_assets(spec, PARTITIONS)]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets, resources=res, instance=instance, partition_key=DAY.isoformat()
        )
    assert result.success
    meta = result.asset_materializations_for_node(f"{MODEL}_predictions")[0].metadata
    lake = Path(res["lake"].root)
    log = pq.read_table(lake / "decision_log")
    canary = [in_canary(MODEL, rid, 0.25) for rid in log.column("record_id").to_pylist()]
    assert meta["canary_rows"].value == sum(canary) > 0
    assert log.column("route").to_pylist() == ["canary" if c else "champion" for c in canary]
    assert log.column("model_version").to_pylist() == ["2" if c else "1" for c in canary]
    routed = pq.read_table(lake / f"{MODEL}_routed_tickets")
    review = pq.read_table(lake / f"{MODEL}_review_queue")
    assert routed.num_rows + review.num_rows == 400
    assert set(routed.column("model_version").to_pylist()) == {"1", "2"}
    first_canary = log.column("record_id")[canary.index(True)].as_py()
    [why] = explain_record(lake / "decision_log", first_canary, specs={spec.name: spec})
    assert f"Model {MODEL} v2 (canary: the challenger decided)" in why

    # A micro-batch scoring the same emails (into another dataset) routes them the same way.
    other = replace(spec, name="canary_router_mb")
    micro = build_microbatch_asset(other)
    config = {"ops": {micro.op.name: {"config": {"lookback_hours": 24 * 365}}}}
    assert dg.materialize([micro], resources=res, run_config=config).success
    mb = pq.read_table(lake / "canary_router_mb_predictions").sort_by("record_id")
    daily = pq.read_table(lake / f"{MODEL}_predictions").sort_by("record_id")
    assert mb.column("model_version").to_pylist() == daily.column("model_version").to_pylist()
    assert mb.column("team").to_pylist() == daily.column("team").to_pylist()
