"""Holdout evaluation of a model: the numbers the gate, the model card and the approver read.

Per head: accuracy, macro F1, recall and support per class, and expected calibration error
(ECE); the same again for each segment (rows where a 0/1 indicator feature is set). Scores are
computed in process by ``LinearHeadsModel.predict_proba``, the maths Triton serves, so the
evaluation describes the served model. The holdout is a time split (``time_split``): the model
is used on mail that arrives after its training data, so it is judged on the newest rows.

A class the model knows but the holdout lacks has no defined recall: it is recorded as such
(``None``, listed in ``undefined_recall``) rather than as 0 or 1, and left out of the macro F1.
A label in the holdout that the model has no class for is counted (every such row is an error)
and listed in ``unknown_labels``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aios_dagster.lib.serving.linear_model import LinearHeadsModel

#: Equal-width bins over the top-class confidence. 15 is the count of Guo et al. (2017), whose
#: definition of ECE the usual libraries follow, so our figures compare with published ones; it
#: is also coarse enough that a holdout of a few thousand rows puts tens of rows in each bin that
#: is used (top-class confidence lives in (1/k, 1]), which keeps the per-bin accuracy stable.
ECE_BINS = 15

METRICS = ("accuracy", "macro_f1", "ece")


@dataclass(frozen=True)
class ClassMetrics:
    """One class of one head: how many holdout rows have it and how many of them were found."""

    support: int
    recall: float | None  # None: no holdout row has this class, so recall is undefined
    known: bool = True  # False: a label in the holdout that the model cannot predict


@dataclass(frozen=True)
class HeadMetrics:
    rows: int
    accuracy: float
    macro_f1: float  # averaged over the classes present in the rows evaluated
    ece: float
    classes: Mapping[str, ClassMetrics]

    @property
    def undefined_recall(self) -> tuple[str, ...]:
        """Classes of the model with no row here: their recall is undefined."""
        return tuple(c for c, m in self.classes.items() if m.recall is None)

    @property
    def unknown_labels(self) -> tuple[str, ...]:
        """Labels in the rows that the model has no class for."""
        return tuple(c for c, m in self.classes.items() if not m.known)

    def notes(self) -> list[str]:
        notes = [f"{c}: absent from the holdout, recall undefined" for c in self.undefined_recall]
        notes += [
            f"{c}: not a class of the model, every such row is wrong" for c in self.unknown_labels
        ]
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "ece": self.ece,
            "classes": {
                c: {"support": m.support, "recall": m.recall, "known": m.known}
                for c, m in self.classes.items()
            },
            "undefined_recall": list(self.undefined_recall),
            "unknown_labels": list(self.unknown_labels),
            "notes": self.notes(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadMetrics:
        return cls(
            rows=int(data["rows"]),
            accuracy=float(data["accuracy"]),
            macro_f1=float(data["macro_f1"]),
            ece=float(data["ece"]),
            classes={
                c: ClassMetrics(
                    support=int(m["support"]),
                    recall=None if m["recall"] is None else float(m["recall"]),
                    known=bool(m.get("known", True)),
                )
                for c, m in data["classes"].items()
            },
        )


@dataclass(frozen=True)
class SegmentEvaluation:
    """The metrics of the rows in one segment (none when the holdout has no such row)."""

    rows: int
    heads: Mapping[str, HeadMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "heads": {h: m.to_dict() for h, m in self.heads.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentEvaluation:
        heads = {h: HeadMetrics.from_dict(m) for h, m in data["heads"].items()}
        return cls(rows=int(data["rows"]), heads=heads)


@dataclass(frozen=True)
class Evaluation:
    """A model's metrics on one holdout; ``labels_digest`` identifies the labelled rows.

    Two evaluations compare (candidate against champion) only when their digests are equal:
    the same rows with the same labels.
    """

    rows: int
    heads: Mapping[str, HeadMetrics]
    segments: Mapping[str, SegmentEvaluation] = field(default_factory=dict)
    labels_digest: str = ""
    ece_bins: int = ECE_BINS

    def head(self, name: str) -> HeadMetrics:
        if name not in self.heads:
            raise KeyError(f"head {name!r} was not evaluated (heads: {sorted(self.heads)})")
        return self.heads[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "labels_digest": self.labels_digest,
            "ece_bins": self.ece_bins,
            "macro_f1_over": "classes present in the rows evaluated",
            "heads": {h: m.to_dict() for h, m in self.heads.items()},
            "segments": {s: e.to_dict() for s, e in self.segments.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(
            rows=int(data["rows"]),
            heads={h: HeadMetrics.from_dict(m) for h, m in data["heads"].items()},
            segments={
                s: SegmentEvaluation.from_dict(e) for s, e in data.get("segments", {}).items()
            },
            labels_digest=str(data.get("labels_digest", "")),
            ece_bins=int(data.get("ece_bins", ECE_BINS)),
        )

    def to_markdown(self) -> str:
        """One row per head (and per segment and head): what the Dagster UI shows."""
        lines = [
            "| rows | head | n | accuracy | macro F1 | ECE | lowest recall | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        scopes = [("all", self.heads)] + [(s, e.heads) for s, e in self.segments.items()]
        for scope, heads in scopes:
            for name, m in heads.items():
                recalls = [
                    (c.recall, label) for label, c in m.classes.items() if c.recall is not None
                ]
                low = min(recalls) if recalls else None
                lines.append(
                    f"| {scope} | {name} | {m.rows} | {m.accuracy:.3f} | {m.macro_f1:.3f} | "
                    f"{m.ece:.3f} | {f'{low[1]} {low[0]:.3f}' if low else 'n/a'} | "
                    f"{'; '.join(m.notes())} |"
                )
        return "\n".join(lines)


def time_split(n: int, holdout_fraction: float) -> int:
    """Index of the first holdout row: rows ``[cut:]`` (the newest) are held out.

    Rows arrive time ordered. The holdout is ``round(n * holdout_fraction)`` rows, at least one,
    and at least one row is left to train on.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout_fraction must be between 0 and 1 (exclusive), not {holdout_fraction}"
        )
    if n < 2:
        raise ValueError(f"{n} rows cannot be split into training rows and a holdout")
    holdout = min(n - 1, max(1, round(n * holdout_fraction)))
    return n - holdout


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: row-weighted mean gap between accuracy and mean confidence per confidence bin.

    Bins are ``(k/bins, (k+1)/bins]`` (the first also takes 0). ``sum_b |B|/n * |acc_b -
    conf_b|`` equals ``sum_b |correct_b - confidence_b| / n`` over per-bin sums, which is how it
    is computed here.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.size == 0:
        raise ValueError("expected calibration error of no rows is undefined")
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    hits = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins)
    confs = np.bincount(index, weights=conf, minlength=bins)
    return float(np.abs(hits - confs).sum() / conf.size)


def _head_metrics(
    labels: tuple[str, ...], truth: np.ndarray, predicted: np.ndarray, confidence: np.ndarray
) -> HeadMetrics:
    from sklearn.metrics import precision_recall_fscore_support

    present = sorted(set(truth.tolist()))
    every = list(labels) + [c for c in present if c not in labels]
    _, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=every, zero_division=0
    )
    classes = {
        c: ClassMetrics(support=int(s), recall=float(r) if s else None, known=c in labels)
        for c, r, s in zip(every, recall, support, strict=True)
    }
    macro_f1 = float(np.mean([f for f, s in zip(f1, support, strict=True) if s]))
    correct = truth == predicted
    return HeadMetrics(
        rows=int(truth.size),
        accuracy=float(correct.mean()),
        macro_f1=macro_f1,
        ece=expected_calibration_error(confidence, correct),
        classes=classes,
    )


def _labels(head: str, values: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if array.shape != (n,):
        raise ValueError(f"targets[{head!r}] has shape {array.shape}, the features have {n} rows")
    missing = sum(v is None for v in array)
    if missing:
        raise ValueError(f"targets[{head!r}] has {missing} rows without a label")
    return array.astype(str)


def _mask(name: str, values: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"segment {name!r} has shape {array.shape}, the features have {n} rows")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"segment {name!r} must be a 0/1 indicator, found other values")
    return array.astype(bool)


def labels_digest(targets: Mapping[str, np.ndarray]) -> str:
    """sha256 over the heads' labels in row order: equal digests mean the same labelled rows."""
    digest = hashlib.sha256()
    for head in sorted(targets):
        digest.update(head.encode())
        digest.update("\x1f".join(np.asarray(targets[head]).astype(str).tolist()).encode())
    return digest.hexdigest()


def evaluate(
    model: LinearHeadsModel,
    x: np.ndarray,
    targets: Mapping[str, np.ndarray],
    segments: Mapping[str, np.ndarray] | None = None,
) -> Evaluation:
    """Evaluate every head of ``model`` on the holdout ``x`` with ``targets`` (head -> labels).

    ``segments`` maps a segment name to a boolean (or 0/1) row mask; each gets the same
    metrics on its rows (a segment without rows is recorded with ``rows=0`` and no heads).
    """
    n = int(np.asarray(x).shape[0])
    if n == 0:
        raise ValueError("cannot evaluate on an empty holdout")
    heads = {h.name: h for h in model.heads}
    missing = sorted(set(heads) - set(targets))
    stray = sorted(set(targets) - set(heads))
    if missing or stray:
        raise ValueError(
            f"targets must name exactly the model's heads {sorted(heads)}"
            f"{f'; missing {missing}' if missing else ''}{f'; not heads {stray}' if stray else ''}"
        )
    truth = {h: _labels(h, targets[h], n) for h in heads}
    masks = {s: _mask(s, m, n) for s, m in (segments or {}).items()}
    probs = model.predict_proba(x)
    scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, head in heads.items():
        best = probs[name].argmax(axis=1)
        predicted = np.asarray(head.labels, dtype=object)[best].astype(str)
        scored[name] = predicted, probs[name][np.arange(n), best]

    def metrics(rows: np.ndarray | slice) -> dict[str, HeadMetrics]:
        return {
            name: _head_metrics(
                heads[name].labels, truth[name][rows], scored[name][0][rows], scored[name][1][rows]
            )
            for name in heads
        }

    return Evaluation(
        rows=n,
        heads=metrics(slice(None)),
        segments={
            s: SegmentEvaluation(int(m.sum()), metrics(m) if m.any() else {})
            for s, m in masks.items()
        },
        labels_digest=labels_digest(truth),
    )
