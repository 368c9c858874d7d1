"""Champion against challenger on the same day's emails: the figures an approver reads.

Per day and head: how often the two agree, the confusion between their labels, how much more
(or less) confident the challenger is, and how much slower (or faster) it answers. Compared are
the day's current predictions decided by a champion version (canary rows, decided by the
challenger itself, are left out) against the challenger's shadow rows of the same emails.

Latency is measured directly rather than read from the two assets' run metadata: one sample of
the day's rows (one request) goes to each version in alternating order for a few rounds after a
warm-up, so both see the same rows, the same server load and the same moment; the predictions
asset's own latencies mix canary requests and were measured at another time (a day scored by
micro-batches has none at all).

Each compared day is kept as rows of ``<name>_shadow_comparison`` (one per head, one part per
day and challenger version, replaced on re-run; written by ``shadow.compare_day``), which
``read_shadow_summary`` aggregates.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.inference.batch import Deployment
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.serving.triton import TritonResource

#: Timed rounds per version after one warm-up round; the median of these is reported.
LATENCY_ROUNDS = 5

COMPARISON_SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("model_name", pa.string()),
        ("challenger_version", pa.string()),
        ("champion_versions", pa.string()),  # comma-joined: the versions that decided the day
        ("head", pa.string()),
        ("rows_compared", pa.int64()),
        ("agreement", pa.float64()),
        ("mean_confidence_shift", pa.float64()),  # challenger minus champion
        ("decision_agreement", pa.float64()),  # the policy outcome, review included
        ("confusion", pa.string()),  # JSON: champion label -> challenger label -> rows
        ("champion_only_rows", pa.int64()),
        ("shadow_only_rows", pa.int64()),
        ("canary_rows", pa.int64()),
        ("champion_latency_ms_p50", pa.float64()),
        ("challenger_latency_ms_p50", pa.float64()),
        ("latency_diff_ms_p50", pa.float64()),  # challenger minus champion
        ("run_id", pa.string()),
        ("compared_at", pa.timestamp("us", tz="UTC")),
    ]
)


def comparison_dataset(model_name: str) -> str:
    return f"{model_name}_shadow_comparison"


def comparison_part(day: date, challenger_version: str) -> str:
    return f"date={day.isoformat()}__v={challenger_version}"


@dataclass(frozen=True)
class HeadComparison:
    head: str
    agreement: float
    mean_confidence_shift: float
    confusion: dict[str, dict[str, int]]  # champion label -> challenger label -> rows


@dataclass(frozen=True)
class DayComparison:
    """One day's comparison (empty, with ``challenger_version=""``, when there is none)."""

    day: date
    challenger_version: str
    champion_versions: tuple[str, ...] = ()
    rows_compared: int = 0
    champion_only_rows: int = 0  # champion-decided emails the shadow run did not see
    shadow_only_rows: int = 0  # shadow rows with no current prediction
    canary_rows: int = 0  # decided by the challenger itself: not compared
    decision_agreement: float | None = None
    heads: tuple[HeadComparison, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        if not self.challenger_version:
            return {
                "dagster/row_count": 0,
                "challenger_version": "",
                "written": False,
                "note": "no challenger on Triton: nothing to compare",
            }
        meta: dict[str, Any] = {
            "dagster/row_count": self.rows_compared,
            "challenger_version": self.challenger_version,
            "champion_versions": ",".join(self.champion_versions),
            "written": self.rows_compared > 0,
            "champion_only_rows": self.champion_only_rows,
            "shadow_only_rows": self.shadow_only_rows,
            "canary_rows": self.canary_rows,
            **self.latency_ms,
        }
        if self.decision_agreement is not None:
            meta["decision_agreement"] = round(self.decision_agreement, 6)
        for h in self.heads:
            meta[f"agreement_{h.head}"] = round(h.agreement, 6)
            meta[f"confidence_shift_{h.head}"] = round(h.mean_confidence_shift, 6)
            meta[f"confusion_{h.head}"] = dg.MetadataValue.md(confusion_markdown(h.confusion))
        return meta

    def to_table(self, model_name: str, run_id: str) -> pa.Table:
        now = datetime.now(UTC)
        rows = [
            {
                "date": self.day,
                "model_name": model_name,
                "challenger_version": self.challenger_version,
                "champion_versions": ",".join(self.champion_versions),
                "head": h.head,
                "rows_compared": self.rows_compared,
                "agreement": h.agreement,
                "mean_confidence_shift": h.mean_confidence_shift,
                "decision_agreement": self.decision_agreement,
                "confusion": json.dumps(h.confusion, sort_keys=True),
                "champion_only_rows": self.champion_only_rows,
                "shadow_only_rows": self.shadow_only_rows,
                "canary_rows": self.canary_rows,
                "champion_latency_ms_p50": self.latency_ms.get("champion_latency_ms_p50"),
                "challenger_latency_ms_p50": self.latency_ms.get("challenger_latency_ms_p50"),
                "latency_diff_ms_p50": self.latency_ms.get("latency_diff_ms_p50"),
                "run_id": run_id,
                "compared_at": now,
            }
            for h in self.heads
        ]
        return pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)


def _escape(label: str) -> str:
    return label.replace("|", "\\|")


def confusion_markdown(confusion: dict[str, dict[str, int]]) -> str:
    """Rows: the champion's label; columns: the challenger's; cells: emails."""
    rows = sorted(confusion)
    cols = sorted({c for counts in confusion.values() for c in counts})
    lines = [
        "| champion \\ challenger | " + " | ".join(_escape(c) for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = " | ".join(str(confusion[r].get(c, 0)) for c in cols)
        lines.append(f"| {_escape(r)} | {cells} |")
    return "\n".join(lines)


def compare(
    spec: ModelSpec, day: date, predictions: pa.Table, shadow: pa.Table, challenger_version: str
) -> DayComparison:
    """Compare the day's current predictions with the challenger's shadow rows (pure)."""
    decided = pc.not_equal(predictions.column("model_version"), challenger_version)
    champion = predictions.filter(decided)
    shadow_ids = shadow.column("record_id").combine_chunks()
    index = pc.index_in(champion.column("record_id"), value_set=shadow_ids)
    matched = pc.is_valid(index)
    ours = champion.filter(matched)
    theirs = shadow.take(pc.drop_null(index))
    known = pc.is_in(shadow_ids, value_set=predictions.column("record_id").combine_chunks())
    result = DayComparison(
        day=day,
        challenger_version=challenger_version,
        champion_versions=tuple(sorted(set(ours.column("model_version").to_pylist()))),
        rows_compared=ours.num_rows,
        champion_only_rows=champion.num_rows - ours.num_rows,
        shadow_only_rows=shadow.num_rows - int(pc.sum(known).as_py() or 0),
        canary_rows=predictions.num_rows - champion.num_rows,
    )
    if not ours.num_rows:
        return result
    heads = []
    for head in (h.name for h in spec.heads):
        a = np.asarray(ours.column(head).to_pylist(), dtype=object)
        b = np.asarray(theirs.column(head).to_pylist(), dtype=object)
        shift = (
            theirs.column(f"{head}_confidence").to_numpy()
            - ours.column(f"{head}_confidence").to_numpy()
        )
        confusion: dict[str, dict[str, int]] = {}
        for (x, y), count in Counter(zip(a.tolist(), b.tolist(), strict=True)).items():
            confusion.setdefault(x, {})[y] = count
        heads.append(HeadComparison(head, float((a == b).mean()), float(shift.mean()), confusion))
    same = pc.equal(ours.column("decision"), theirs.column("decision"))
    return replace(
        result,
        decision_agreement=float(pc.mean(pc.cast(same, pa.float64())).as_py()),
        heads=tuple(heads),
    )


def measure_latency(
    spec: ModelSpec,
    triton: TritonResource,
    matrix: np.ndarray,
    deployment: Deployment,
    rounds: int = LATENCY_ROUNDS,
) -> dict[str, float]:
    """Median request latency of each version on the same rows, sent alternately (see above)."""
    outputs = [f"{h.name}_probs" for h in spec.heads]
    versions = [("champion", deployment.champion), ("challenger", deployment.challenger)]
    samples: dict[str, list[float]] = {"champion": [], "challenger": []}
    for r in range(rounds + 1):
        for role, version in versions if r % 2 else versions[::-1]:
            result = triton.infer(
                spec.triton_model,
                matrix,
                outputs,
                model_version=version,
                input_name=spec.input_tensor,
            )
            if r:  # round 0 warms both versions up
                samples[role].append(sum(result.latencies_ms))
    champion, challenger = (round(statistics.median(samples[k]), 3) for k in samples)
    return {
        "champion_latency_ms_p50": champion,
        "challenger_latency_ms_p50": challenger,
        "latency_diff_ms_p50": round(challenger - champion, 3),
        "latency_rows": int(matrix.shape[0]),
    }


def _weighted(values: list[float], weights: list[int]) -> float | None:
    total = sum(weights)
    return None if not total else sum(v * w for v, w in zip(values, weights, strict=True)) / total


def read_shadow_summary(
    lake: LakeResource, model_name: str, challenger_version: str
) -> dict[str, Any]:
    """The challenger's shadow record over every compared day (``model_name`` = catalog name).

    Agreement and confidence shift are weighted by the rows compared each day; latencies are
    the median over days. No compared day gives ``days == []`` and ``rows_compared == 0``.
    """
    dataset = comparison_dataset(model_name)
    suffix = f"__v={challenger_version}"
    parts = [p for p in lake.parts(dataset, "date=") if p.stem.endswith(suffix)]
    summary: dict[str, Any] = {
        "model_name": model_name,
        "challenger_version": str(challenger_version),
        "days": [],
        "rows_compared": 0,
        "decision_agreement": None,
        "champion_versions": [],
        "heads": {},
        "champion_latency_ms_p50": None,
        "challenger_latency_ms_p50": None,
        "latency_diff_ms_p50": None,
    }
    if not parts:
        return summary
    rows = pa.concat_tables([lake.read(dataset, p.stem) for p in parts]).to_pylist()
    per_day = {r["date"]: r for r in rows}  # day-level fields repeat on each head's row
    days = sorted(per_day)
    weights = [per_day[d]["rows_compared"] for d in days]
    summary.update(
        days=[d.isoformat() for d in days],
        rows_compared=sum(weights),
        decision_agreement=_weighted([per_day[d]["decision_agreement"] for d in days], weights),
        champion_versions=sorted(
            {v for d in days for v in per_day[d]["champion_versions"].split(",") if v}
        ),
    )
    for key in ("champion_latency_ms_p50", "challenger_latency_ms_p50", "latency_diff_ms_p50"):
        values = [per_day[d][key] for d in days if per_day[d][key] is not None]
        summary[key] = statistics.median(values) if values else None
    for head in sorted({r["head"] for r in rows}):
        mine = [r for r in rows if r["head"] == head]
        confusion: Counter[tuple[str, str]] = Counter()
        for r in mine:
            for x, counts in json.loads(r["confusion"]).items():
                confusion.update({(x, y): n for y, n in counts.items()})
        merged: dict[str, dict[str, int]] = {}
        for (x, y), n in sorted(confusion.items()):
            merged.setdefault(x, {})[y] = n
        w = [r["rows_compared"] for r in mine]
        summary["heads"][head] = {
            "rows_compared": sum(w),
            "agreement": _weighted([r["agreement"] for r in mine], w),
            "mean_confidence_shift": _weighted([r["mean_confidence_shift"] for r in mine], w),
            "confusion": merged,
        }
    return summary
