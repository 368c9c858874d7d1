"""The gate on evaluations of the hand-checked model of ``test_evaluation``: every rule is a row,
every failed rule is named, and what cannot be checked fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aios_dagster.lib.inference.catalog import GateSpec, HeadFloor
from aios_dagster.lib.lifecycle.evaluation import evaluate
from aios_dagster.lib.lifecycle.gate import GateResult, apply_gate
from tests.lifecycle.test_evaluation import URGENT, holdout, model


@pytest.fixture(scope="module")
def evaluations():
    x, targets = holdout()
    # candidate: "urgent" always "hi" (4 of 9 right); champion: always "lo" (5 of 9 right).
    return evaluate(model("hi"), x, targets), evaluate(model("lo"), x, targets)


def _rows(result: GateResult) -> dict[str, tuple]:
    return {r.name: (r.value, r.threshold, r.passed) for r in result.rules}


def test_floors_only_without_a_champion_and_every_failure_named(evaluations) -> None:
    candidate, _ = evaluations
    gate = GateSpec(
        floors={
            "queue": HeadFloor(accuracy=0.6, macro_f1=0.5, recall={"a": 0.7, "c": 0.1, "x": 0.2})
        }
    )
    result = apply_gate(gate, candidate, None)
    assert not result.passed and not result.champion_compared
    assert result.note == "no champion: floors only"
    queue = candidate.heads["queue"]
    assert _rows(result) == {
        "queue accuracy floor": (queue.accuracy, 0.6, True),
        "queue macro_f1 floor": (queue.macro_f1, 0.5, False),
        "queue recall[a] floor": (0.75, 0.7, True),
        "queue recall[c] floor": (None, 0.1, False),
        "queue recall[x] floor": (None, 0.2, False),
    }
    summary = result.summary()
    assert summary.startswith("gate failed: 3 of 5 rule(s) (no champion: floors only)")
    assert f"queue macro_f1 floor: {queue.macro_f1:.4f} < floor 0.5000" in summary
    assert "queue recall[c] floor: class 'c' has no holdout row, recall undefined" in summary
    assert "class 'x' is not a class of the model (its classes: ['a', 'b', 'c'])" in summary
    assert "recall[a]" not in summary


def test_non_inferiority_on_every_head_with_the_catalogs_margin(evaluations) -> None:
    candidate, champion = evaluations
    drop = champion.heads["urgent"].macro_f1 - candidate.heads["urgent"].macro_f1
    assert 0.02 < drop < 0.06  # the constructed case: worse on "urgent", equal on "queue"

    tight = apply_gate(GateSpec(non_inferiority_margin=0.02), candidate, champion)
    assert not tight.passed and tight.champion_compared
    [failed] = tight.failed
    assert (failed.head, failed.metric, failed.kind) == ("urgent", "macro_f1", "non_inferiority")
    assert failed.champion_value == champion.heads["urgent"].macro_f1 and failed.margin == 0.02
    assert failed.threshold == pytest.approx(champion.heads["urgent"].macro_f1 - 0.02)
    assert "urgent macro_f1 non-inferiority" in tight.summary()
    assert [r.head for r in tight.rules] == ["queue", "urgent"]

    loose = apply_gate(GateSpec(non_inferiority_margin=0.06), candidate, champion)
    assert loose.passed and loose.summary().startswith("gate passed: 2 rule(s)")

    def by_accuracy(margin: float) -> GateResult:
        gate = GateSpec(non_inferiority_metric="accuracy", non_inferiority_margin=margin)
        return apply_gate(gate, candidate, champion)

    assert by_accuracy(0.12).passed  # 4/9 >= 5/9 - 0.12
    assert not by_accuracy(0.1).passed  # 4/9 < 5/9 - 0.1
    assert {r.metric for r in by_accuracy(0.1).rules} == {"accuracy"}


def test_an_unknown_head_floor_fails_naming_the_head(evaluations) -> None:
    candidate, _ = evaluations
    result = apply_gate(GateSpec(floors={"team": HeadFloor(accuracy=0.5)}), candidate, None)
    assert not result.passed
    assert "head 'team' was not evaluated (heads: ['queue', 'urgent'])" in result.summary()


def test_champion_on_other_rows_is_refused(evaluations) -> None:
    candidate, _ = evaluations
    x, targets = holdout()
    other = evaluate(model("lo"), x, {**targets, "urgent": np.array(URGENT[::-1], dtype=object)})
    with pytest.raises(ValueError, match="not evaluated on the same holdout rows"):
        apply_gate(GateSpec(), candidate, other)


def test_result_round_trips_through_json(evaluations) -> None:
    candidate, champion = evaluations
    gate = GateSpec(floors={"queue": HeadFloor(recall={"c": 0.1})})
    result = apply_gate(gate, candidate, champion)
    data = json.loads(json.dumps(result.to_dict()))
    assert GateResult.from_dict(data) == result
    assert data["summary"] == result.summary()
    assert "| queue recall[c] floor |" in result.to_markdown()
