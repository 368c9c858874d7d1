"""The promotion gate: catalog floors per head and class, and non-inferiority to the champion.

Every rule is a row of the result (head, metric, class, value, threshold, champion value and
margin, passed), so the Dagster UI, the model card and the approver see exactly which rule
decided. The gate fails closed: a floor it cannot check (a class the model does not know, or
one the holdout has no row of) fails, with the reason named, rather than passing silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aios_dagster.lib.inference.catalog import GateSpec
from aios_dagster.lib.lifecycle.evaluation import Evaluation

NON_INFERIORITY_METRICS = ("accuracy", "macro_f1")

# Float noise in metrics computed on the same rows must not fail an exact-floor rule.
_EPS = 1e-12


@dataclass(frozen=True)
class RuleResult:
    """One rule of the gate as applied to one candidate."""

    kind: str  # "floor" | "non_inferiority"
    head: str
    metric: str  # "accuracy" | "macro_f1" | "recall"
    label: str | None  # the class of a recall floor
    value: float | None  # the candidate's value (None: it could not be computed)
    threshold: float | None  # the floor, or the champion's value minus the margin
    passed: bool
    champion_value: float | None = None
    margin: float | None = None
    reason: str = ""  # why a rule could not be checked

    @property
    def name(self) -> str:
        what = f"{self.metric}[{self.label}]" if self.label is not None else self.metric
        return f"{self.head} {what} {'floor' if self.kind == 'floor' else 'non-inferiority'}"

    def describe(self) -> str:
        """One line: the rule, the figures and (when it failed) why."""
        if self.reason:
            return f"{self.name}: {self.reason}"
        value = "n/a" if self.value is None else f"{self.value:.4f}"
        if self.kind == "floor":
            relation = ">=" if self.passed else "<"
            return f"{self.name}: {value} {relation} floor {self.threshold:.4f}"
        relation = ">=" if self.passed else "<"
        return (
            f"{self.name}: {value} {relation} champion {self.champion_value:.4f} "
            f"- margin {self.margin:.4f} = {self.threshold:.4f}"
        )


@dataclass(frozen=True)
class GateResult:
    passed: bool
    rules: tuple[RuleResult, ...]
    champion_compared: bool
    note: str = ""

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    def summary(self) -> str:
        """A sentence naming every failed rule (or what was checked when all passed)."""
        scope = "" if not self.note else f" ({self.note})"
        if self.passed:
            return f"gate passed: {len(self.rules)} rule(s) held{scope}"
        failed = self.failed
        return f"gate failed: {len(failed)} of {len(self.rules)} rule(s){scope}: " + "; ".join(
            r.describe() for r in failed
        )

    def to_markdown(self) -> str:
        lines = [
            "| rule | value | threshold | champion | margin | passed |",
            "|---|---|---|---|---|---|",
        ]

        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.4f}"

        for r in self.rules:
            lines.append(
                f"| {r.name} | {fmt(r.value)} | {fmt(r.threshold)} | {fmt(r.champion_value)} | "
                f"{fmt(r.margin)} | {'yes' if r.passed else f'**no** {r.reason}'.strip()} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_compared": self.champion_compared,
            "note": self.note,
            "summary": self.summary(),
            "rules": [asdict(r) for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            passed=bool(data["passed"]),
            rules=tuple(RuleResult(**r) for r in data["rules"]),
            champion_compared=bool(data["champion_compared"]),
            note=str(data.get("note", "")),
        )


def _floor_rules(gate: GateSpec, candidate: Evaluation) -> list[RuleResult]:
    rules: list[RuleResult] = []
    for head, floor in gate.floors.items():
        metrics = candidate.heads.get(head)
        checks: list[tuple[str, str | None, float]] = [
            (metric, None, getattr(floor, metric))
            for metric in ("accuracy", "macro_f1")
            if getattr(floor, metric) > 0
        ]
        checks += [("recall", label, value) for label, value in floor.recall.items()]
        for metric, label, threshold in checks:
            reason = ""
            value: float | None = None
            if metrics is None:
                reason = f"head {head!r} was not evaluated (heads: {sorted(candidate.heads)})"
            elif label is None:
                value = getattr(metrics, metric)
            elif label not in metrics.classes or not metrics.classes[label].known:
                known = sorted(c for c, m in metrics.classes.items() if m.known)
                reason = f"class {label!r} is not a class of the model (its classes: {known})"
            else:
                value = metrics.classes[label].recall
                if value is None:
                    reason = f"class {label!r} has no holdout row, recall undefined"
            passed = value is not None and value + _EPS >= threshold
            rules.append(
                RuleResult("floor", head, metric, label, value, threshold, passed, reason=reason)
            )
    return rules


def _non_inferiority_rules(
    gate: GateSpec, candidate: Evaluation, champion: Evaluation
) -> list[RuleResult]:
    metric, margin = gate.non_inferiority_metric, gate.non_inferiority_margin
    rules: list[RuleResult] = []
    for head in sorted(set(candidate.heads) | set(champion.heads)):
        if head not in champion.heads:
            continue  # a new head has nothing to be compared with
        champ = float(getattr(champion.heads[head], metric))
        threshold = champ - margin
        if head not in candidate.heads:
            rules.append(
                RuleResult(
                    "non_inferiority",
                    head,
                    metric,
                    None,
                    None,
                    threshold,
                    False,
                    champ,
                    margin,
                    reason=f"the candidate has no head {head!r} that the champion serves",
                )
            )
            continue
        value = float(getattr(candidate.heads[head], metric))
        passed = value + _EPS >= threshold
        rules.append(
            RuleResult(
                "non_inferiority", head, metric, None, value, threshold, passed, champ, margin
            )
        )
    return rules


def apply_gate(gate: GateSpec, candidate: Evaluation, champion: Evaluation | None) -> GateResult:
    """Check ``candidate`` against the catalog's floors and, with a champion, non-inferiority.

    ``champion`` must be the champion's evaluation on the candidate's holdout rows (equal
    ``labels_digest``), else comparing them would mean nothing: ``ValueError``. Without a
    champion only the floors apply, and the result says so.
    """
    if gate.non_inferiority_metric not in NON_INFERIORITY_METRICS:
        raise ValueError(
            f"non_inferiority_metric must be one of {list(NON_INFERIORITY_METRICS)}, "
            f"not {gate.non_inferiority_metric!r}"
        )
    rules = _floor_rules(gate, candidate)
    if champion is None:
        note = "no champion: floors only"
    else:
        if champion.labels_digest != candidate.labels_digest or champion.rows != candidate.rows:
            raise ValueError(
                f"candidate ({candidate.rows} rows) and champion ({champion.rows} rows) were not "
                "evaluated on the same holdout rows; evaluate the champion on the candidate's "
                "holdout"
            )
        rules += _non_inferiority_rules(gate, candidate, champion)
        note = (
            f"non-inferiority on {gate.non_inferiority_metric}, margin "
            f"{gate.non_inferiority_margin:g}"
        )
    if not rules:
        note = f"{note}; no floors declared" if note else "no floors declared"
    return GateResult(
        passed=all(r.passed for r in rules),
        rules=tuple(rules),
        champion_compared=champion is not None,
        note=note,
    )
