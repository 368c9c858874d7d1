"""Holdout evaluation on a model whose every prediction is known, so each figure is worked out
by hand here (not recomputed with the code under test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aios_dagster.lib.lifecycle.evaluation import (
    ECE_BINS,
    Evaluation,
    evaluate,
    expected_calibration_error,
    time_split,
)
from aios_dagster.lib.serving.linear_model import LinearHead, LinearHeadsModel

# Head "queue" predicts the class whose one-hot feature is set, with confidence
# e^10 / (e^10 + 2). Head "urgent" ignores the features and says "hi" with confidence 3/4.
PREDICTED = ["a", "a", "a", "b", "b", "b", "b", "a", "a"]
QUEUE = ["a", "a", "a", "a", "b", "b", "b", "b", "z"]  # "c" never occurs, "z" is unknown
URGENT = ["hi", "lo", "hi", "lo", "hi", "lo", "hi", "lo", "lo"]
VIP = [1, 1, 0, 0, 1, 1, 0, 0, 0]
QUEUE_CONF = math.exp(10) / (math.exp(10) + 2)


def model(urgent_label: str = "hi") -> LinearHeadsModel:
    """The model described above; ``urgent_label`` is the class "urgent" always predicts."""
    bias = math.log(3) if urgent_label == "hi" else -math.log(3)
    return LinearHeadsModel(
        feature_names=("fa", "fb", "fc"),
        mean=np.zeros(3),
        scale=np.ones(3),
        heads=(
            LinearHead("queue", ("a", "b", "c"), 10 * np.eye(3), np.zeros(3)),
            LinearHead("urgent", ("lo", "hi"), np.zeros((2, 3)), np.array([0.0, bias])),
        ),
    )


def holdout() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x = np.eye(3, dtype=np.float32)[["abc".index(p) for p in PREDICTED]]
    return x, {"queue": np.array(QUEUE, dtype=object), "urgent": np.array(URGENT, dtype=object)}


def test_every_figure_per_head_and_class() -> None:
    x, targets = holdout()
    ev = evaluate(model(), x, targets)
    queue, urgent = ev.heads["queue"], ev.heads["urgent"]

    assert ev.rows == 9 and queue.rows == 9
    assert queue.accuracy == pytest.approx(6 / 9)
    # Per class F1 over the classes present: a = 2*(3/5)(3/4)/(3/5+3/4), b = 3/4, z = 0.
    f1_a = 2 * 0.6 * 0.75 / 1.35
    assert queue.macro_f1 == pytest.approx((f1_a + 0.75 + 0.0) / 3)
    assert {c: (m.support, m.recall, m.known) for c, m in queue.classes.items()} == {
        "a": (4, 0.75, True),
        "b": (4, 0.75, True),
        "c": (0, None, True),
        "z": (1, 0.0, False),
    }
    assert queue.undefined_recall == ("c",) and queue.unknown_labels == ("z",)
    assert "c: absent from the holdout, recall undefined" in queue.notes()
    # Every queue row sits in the top confidence bin.
    assert queue.ece == pytest.approx(QUEUE_CONF - 6 / 9)

    assert urgent.accuracy == pytest.approx(4 / 9)
    assert urgent.ece == pytest.approx(0.75 - 4 / 9)
    assert urgent.classes["hi"].recall == 1.0 and urgent.classes["lo"].recall == 0.0
    assert urgent.macro_f1 == pytest.approx((2 * (4 / 9) / (1 + 4 / 9)) / 2)
    assert ev.ece_bins == ECE_BINS


def test_segments_get_the_same_metrics_on_their_rows() -> None:
    x, targets = holdout()
    ev = evaluate(model(), x, targets, {"vip": np.array(VIP), "nobody": np.zeros(9, dtype=bool)})
    vip = ev.segments["vip"]
    assert vip.rows == 4
    assert vip.heads["queue"].accuracy == 1.0
    assert {c: m.recall for c, m in vip.heads["queue"].classes.items()} == {
        "a": 1.0,
        "b": 1.0,
        "c": None,
    }
    assert vip.heads["urgent"].accuracy == pytest.approx(2 / 4)
    assert ev.segments["nobody"].rows == 0 and not ev.segments["nobody"].heads


def test_json_round_trip_keeps_undefined_recall() -> None:
    x, targets = holdout()
    ev = evaluate(model(), x, targets, {"vip": np.array(VIP)})
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["heads"]["queue"]["classes"]["c"]["recall"] is None
    assert data["heads"]["queue"]["undefined_recall"] == ["c"]
    assert Evaluation.from_dict(data) == ev
    assert "| all | queue | 9 |" in ev.to_markdown()


def test_the_same_rows_give_the_same_digest() -> None:
    x, targets = holdout()
    assert (
        evaluate(model(), x, targets).labels_digest
        == evaluate(model("lo"), x, targets).labels_digest
    )
    other = {**targets, "urgent": np.array(URGENT[::-1], dtype=object)}
    assert evaluate(model(), x, other).labels_digest != evaluate(model(), x, targets).labels_digest


def test_ece_weights_each_bin_by_its_rows() -> None:
    # Bin (0, 1/15]: one row, confidence 0.05, wrong; top bin: one row, 0.95, right.
    assert expected_calibration_error(np.array([0.05, 0.95]), np.array([0, 1])) == pytest.approx(
        0.05
    )
    # One bin holding both: |1/2 - 0.9| .
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 0])) == pytest.approx(0.4)


def test_time_split_holds_out_the_newest_rows() -> None:
    assert time_split(10, 0.2) == 8
    assert time_split(3, 0.1) == 2  # at least one holdout row
    assert time_split(2, 0.9) == 1  # at least one training row
    with pytest.raises(ValueError, match="holdout_fraction"):
        time_split(10, 1.0)
    with pytest.raises(ValueError, match="1 rows"):
        time_split(1, 0.2)


def test_bad_input_is_named() -> None:
    x, targets = holdout()
    with pytest.raises(ValueError, match=r"missing \['urgent'\]"):
        evaluate(model(), x, {"queue": targets["queue"]})
    with pytest.raises(ValueError, match="segment 'vip' must be a 0/1 indicator"):
        evaluate(model(), x, targets, {"vip": np.arange(9)})
    with pytest.raises(ValueError, match=r"targets\['queue'\] has 1 rows without a label"):
        evaluate(model(), x, {**targets, "queue": np.array([*QUEUE[:-1], None], dtype=object)})
    with pytest.raises(ValueError, match="empty holdout"):
        evaluate(model(), x[:0], {h: t[:0] for h, t in targets.items()})
