"""Train the routing model: one multinomial logistic head per target, on standardised features.

Evaluation holds out the *newest* labelled emails (time split, not random) because the model
will be used on mail that arrives after its training data; the published model is exactly the
evaluated one, so the gate's numbers describe what is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aios_dagster.lib.serving.linear_model import LinearHead, LinearHeadsModel


@dataclass(frozen=True)
class TrainingReport:
    rows_train: int
    rows_holdout: int
    holdout_accuracy: dict[str, float]
    holdout_macro_f1: dict[str, float]


def train_linear_heads(
    features: np.ndarray,
    targets: dict[str, np.ndarray],
    feature_names: tuple[str, ...],
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[LinearHeadsModel, TrainingReport]:
    """Fit on the oldest rows, evaluate on the newest ``holdout_fraction`` (rows time-ordered).

    The cut is ``evaluation.time_split``'s, so the rows recorded as the holdout in the
    registry are exactly the rows this training never saw.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from aios_dagster.lib.lifecycle.evaluation import time_split

    n = len(features)
    if n < 20:
        raise ValueError(f"only {n} labelled rows: too few to train and evaluate a model")
    cut = time_split(n, holdout_fraction)
    x_train, x_test = features[:cut], features[cut:]
    mean = x_train.mean(axis=0).astype(np.float32)
    scale = x_train.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    z_train = (x_train - mean) / scale
    z_test = (x_test - mean) / scale

    heads: list[LinearHead] = []
    accuracy: dict[str, float] = {}
    macro_f1: dict[str, float] = {}
    for head, y in targets.items():
        clf = LogisticRegression(max_iter=400, C=0.5, random_state=seed)
        clf.fit(z_train, y[:cut])
        pred = clf.predict(z_test)
        accuracy[head] = float(accuracy_score(y[cut:], pred))
        macro_f1[head] = float(f1_score(y[cut:], pred, average="macro"))
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # binary sklearn models keep one row; make it a softmax pair
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        heads.append(
            LinearHead(
                name=head,
                labels=tuple(str(c) for c in clf.classes_),
                coef=coef.astype(np.float32),
                intercept=intercept.astype(np.float32),
            )
        )
    model = LinearHeadsModel(
        feature_names=feature_names, mean=mean, scale=scale, heads=tuple(heads)
    )
    report = TrainingReport(
        rows_train=cut,
        rows_holdout=n - cut,
        holdout_accuracy=accuracy,
        holdout_macro_f1=macro_f1,
    )
    return model, report
