"""Shadow scoring and the champion/challenger comparison on a real Triton and a real lake.

The challenger's rows live in their own dataset and never reach predictions, the decision log
or a sink; the comparison's figures equal those computed here from the two models in process.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.shadow import build_shadow_assets, read_shadow_summary
from aios_dagster.lib.inference.shadow_comparison import compare
from aios_dagster.lib.inference.sinks import build_sink_assets
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.deployments import deploy, write_days
from tests.inference.features import N_FEATURES, resources, spec_for

MODEL = "shadow_router"
HEADS = {"team": 4, "urgency": 3}
DAYS = {date(2026, 11, 2): 900, date(2026, 11, 3): 500}
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
RANGE = {
    "dagster/asset_partition_range_start": "2026-11-02",
    "dagster/asset_partition_range_end": "2026-11-03",
}
SPEC = spec_for(MODEL)
MIN_CONFIDENCE = SPEC.policy.min_confidence


@pytest.fixture(scope="module")
def served(
    triton_repository: Path, triton_server
) -> tuple[dict[int, LinearHeadsModel], TritonResource]:
    """v1 (champion), v2 (other weights), v3 (v1's weights again) of ``MODEL``."""
    first, other = (LinearHeadsModel.random(N_FEATURES, HEADS, seed=s) for s in (50, 51))
    models = {1: first, 2: other, 3: first}
    for version, model in models.items():
        assert publish_linear_model(triton_repository, MODEL, model).version == version
    return models, TritonResource(url=triton_server.grpc_url, retry_backoff_s=0.05)


def assets() -> list:
    return [
        build_prediction_asset(SPEC, PARTITIONS),
        build_sink_assets(SPEC, PARTITIONS),
        *build_shadow_assets(SPEC, PARTITIONS),
    ]


def meta(instance: dg.DagsterInstance, asset: str, day: date) -> dict:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    assert record.asset_materialization is not None
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def in_process(model: LinearHeadsModel, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Head -> (label, confidence) per row, from the model in process."""
    out = {}
    for head, probs in model.predict_proba(x).items():
        best = probs.argmax(axis=1)
        labels = np.asarray(next(h for h in model.heads if h.name == head).labels)
        out[head] = labels[best], probs[np.arange(len(x)), best]
    return out


def decisions(scored: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    label, conf = scored["team"]
    return np.where(conf < MIN_CONFIDENCE, SPEC.policy.review_queue, label)


def in_canary(record_id: str, share: float) -> bool:
    digest = hashlib.sha256(f"{MODEL}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def test_without_a_challenger_nothing_is_written_and_the_metadata_says_so(
    served, triton_repository: Path, tmp_path: Path
) -> None:
    models, triton = served
    deploy(triton_repository, MODEL, models, triton, champion=1)
    write_days(tmp_path / "wh.duckdb", DAYS)
    day = next(iter(DAYS))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets(),
            resources=resources(tmp_path, triton),
            instance=instance,
            partition_key=day.isoformat(),
        )
        assert result.success
        shadow = meta(instance, f"{MODEL}_shadow_predictions", day)
        compared = meta(instance, f"{MODEL}_shadow_comparison", day)
    assert shadow["written"] is False and shadow["dagster/row_count"] == 0
    assert "no challenger" in shadow["note"] and "no challenger" in compared["note"]
    lake = tmp_path / "lake"
    assert not (lake / f"{MODEL}_shadow_predictions").exists()
    assert not (lake / f"{MODEL}_shadow_comparison").exists()
    assert pq.read_table(lake / f"{MODEL}_predictions").num_rows == DAYS[day]


def test_a_challenger_shadows_every_day_apart_and_is_compared(
    served, triton_repository: Path, tmp_path: Path
) -> None:
    models, triton = served
    deploy(triton_repository, MODEL, models, triton, champion=1, challenger=2)
    written = write_days(tmp_path / "wh.duckdb", DAYS)
    res = resources(tmp_path, triton)
    lake = tmp_path / "lake"
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets(), resources=res, instance=instance, tags=RANGE).success
        metas = {
            day: (
                meta(instance, f"{MODEL}_shadow_predictions", day),
                meta(instance, f"{MODEL}_shadow_comparison", day),
            )
            for day in DAYS
        }

    shadow = pq.read_table(lake / f"{MODEL}_shadow_predictions")
    assert shadow.num_rows == sum(DAYS.values())
    assert set(shadow.column("model_version").to_pylist()) == {"2"}
    assert set(shadow.column("route").to_pylist()) == {"shadow"}
    # Never acted on: champion-only in predictions, decision log and sinks.
    for dataset in ("predictions", "routed_tickets", "review_queue"):
        table = pq.read_table(lake / f"{MODEL}_{dataset}")
        assert set(table.column("model_version").to_pylist()) == {"1"}, dataset
    log = pq.read_table(lake / "decision_log")
    assert set(log.column("route").to_pylist()) == {"champion"}
    assert log.num_rows == sum(DAYS.values())

    agreement = []
    for day, (_, x) in written.items():
        shadow_meta, compared = metas[day]
        assert shadow_meta["dagster/row_count"] == DAYS[day] and shadow_meta["written"] is True
        assert shadow_meta["latency_ms_p50"] <= shadow_meta["latency_ms_p95"]
        champ, chall = in_process(models[1], x), in_process(models[2], x)
        same = champ["team"][0] == chall["team"][0]
        agreement.append(same)
        assert 0.0 < same.mean() < 1.0  # the constructed case: they differ on some emails
        assert compared["dagster/row_count"] == DAYS[day]
        assert compared["agreement_team"] == pytest.approx(same.mean(), abs=1e-6)
        assert compared["agreement_urgency"] == pytest.approx(
            (champ["urgency"][0] == chall["urgency"][0]).mean(), abs=1e-6
        )
        shift = (chall["team"][1] - champ["team"][1]).mean()
        assert compared["confidence_shift_team"] == pytest.approx(shift, abs=1e-5)
        assert compared["decision_agreement"] == pytest.approx(
            (decisions(champ) == decisions(chall)).mean(), abs=1e-6
        )
        # The Markdown confusion: a cell per (champion label, challenger label).
        table = [
            [c.strip() for c in line.strip().strip("|").split("|")]
            for line in compared["confusion_team"].splitlines()
        ]
        header, cells = table[0], {row[0]: row for row in table[2:]}
        for a, b in {(a, b) for a, b in zip(champ["team"][0], chall["team"][0], strict=True)}:
            count = int(((champ["team"][0] == a) & (chall["team"][0] == b)).sum())
            assert cells[a][header.index(b)] == str(count), (a, b)
        assert compared["champion_versions"] == "1" and compared["canary_rows"] == 0
        assert isinstance(compared["latency_diff_ms_p50"], float)

    summary = read_shadow_summary(res["lake"], MODEL, "2")
    assert summary["days"] == [d.isoformat() for d in DAYS]
    assert summary["rows_compared"] == sum(DAYS.values())
    assert summary["heads"]["team"]["agreement"] == pytest.approx(np.concatenate(agreement).mean())
    assert sum(sum(c.values()) for c in summary["heads"]["team"]["confusion"].values()) == sum(
        DAYS.values()
    )
    assert summary["champion_versions"] == ["1"] and summary["latency_diff_ms_p50"] is not None
    assert read_shadow_summary(res["lake"], MODEL, "3")["rows_compared"] == 0

    # A re-run replaces the day's shadow part instead of adding one.
    day = next(iter(DAYS))
    rerun = dg.materialize(assets()[2:3], resources=res, partition_key=day.isoformat())
    assert rerun.success
    assert len(list((lake / f"{MODEL}_shadow_predictions").glob(f"date={day}*.parquet"))) == 1
    assert pq.read_table(lake / f"{MODEL}_shadow_predictions").num_rows == sum(DAYS.values())


def test_same_weights_agree_fully_and_canary_rows_are_not_compared(
    served, triton_repository: Path, tmp_path: Path
) -> None:
    models, triton = served
    deploy(
        triton_repository,
        MODEL,
        models,
        triton,
        champion=1,
        challenger=3,
        share=0.3,
    )
    day = next(iter(DAYS))
    written = write_days(tmp_path / "wh.duckdb", {day: DAYS[day]})
    res = resources(tmp_path, triton)
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            assets(), resources=res, instance=instance, partition_key=day.isoformat()
        ).success
        compared = meta(instance, f"{MODEL}_shadow_comparison", day)
    ids = written[day][0].column("id").to_pylist()
    canary = sum(in_canary(rid, 0.3) for rid in ids)
    assert compared["canary_rows"] == canary > 0
    assert compared["dagster/row_count"] == len(ids) - canary
    assert compared["agreement_team"] == 1.0 and compared["agreement_urgency"] == 1.0
    assert compared["decision_agreement"] == 1.0
    assert abs(compared["confidence_shift_team"]) < 1e-6
    summary = read_shadow_summary(res["lake"], MODEL, "3")
    confusion = summary["heads"]["team"]["confusion"]
    assert all(set(row) == {label} for label, row in confusion.items())  # diagonal only


def test_compare_counts_what_it_could_not_compare() -> None:
    """Pure: a canary row is left out, emails seen by one side only are counted, not compared."""

    def rows(ids, versions, teams, confs, decisions):
        return pa.table(
            {
                "record_id": ids,
                "model_version": versions,
                "decision": decisions,
                "team": teams,
                "urgency": ["u"] * len(ids),
                "team_confidence": confs,
                "urgency_confidence": [0.5] * len(ids),
            }
        )

    predictions = rows(
        ["r1", "r2", "r3", "r4"],
        ["1", "1", "2", "1"],
        ["a", "b", "a", "a"],
        [0.9, 0.6, 0.7, 0.8],
        ["a", "review", "a", "a"],
    )
    shadow = rows(
        ["r5", "r3", "r2", "r1"],
        ["2"] * 4,
        ["a", "a", "a", "a"],
        [0.5, 0.7, 0.9, 0.6],
        ["a", "a", "a", "a"],
    )
    result = compare(SPEC, date(2026, 11, 2), predictions, shadow, "2")
    assert (result.rows_compared, result.canary_rows) == (2, 1)
    assert (result.champion_only_rows, result.shadow_only_rows) == (1, 1)
    team = result.heads[0]
    assert team.agreement == 0.5  # r1 a/a, r2 b/a
    assert team.confusion == {"a": {"a": 1}, "b": {"a": 1}}
    assert team.mean_confidence_shift == pytest.approx(((0.6 - 0.9) + (0.9 - 0.6)) / 2)
    assert result.decision_agreement == 0.5 and result.champion_versions == ("1",)
