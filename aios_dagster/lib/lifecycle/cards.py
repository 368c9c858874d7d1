"""Model cards: what a version is for, what it was trained on, how it performs, who approved it.

A card is a JSON document (``model_card.json``) and its Markdown rendering (``model_card.md``),
stored beside the version in the registry and shown in the Dagster UI as metadata. The
Markdown is a pure function of the JSON, so a decision made later (an approval) re-renders
the stored card from its JSON without the evaluation having to be recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aios_dagster.lib.lifecycle.governance import Approval, utc_now
from aios_dagster.lib.lifecycle.lineage import Lineage

if TYPE_CHECKING:
    from aios_dagster.lib.inference.catalog import ModelSpec
    from aios_dagster.lib.lifecycle.registry import ModelRegistry

CARD_MD = "model_card.md"
CARD_JSON = "model_card.json"
SCHEMA = "aios.model_card/1"


@dataclass(frozen=True)
class ModelCard:
    json: dict[str, Any]

    @property
    def markdown(self) -> str:
        return render_markdown(self.json)

    @property
    def name(self) -> str:
        return str(self.json["model"])

    @property
    def version(self) -> int:
        return int(self.json["version"])


def _plain(value: Any) -> Any:
    """Evaluation / gate objects or their dicts, as JSON data."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return json.loads(json.dumps(value, default=str))


def approval_records(approvals: Iterable[Approval]) -> list[dict[str, str]]:
    return [
        {"decision": a.decision, "actor": a.actor, "reason": a.reason, "at": a.at.isoformat()}
        for a in approvals
    ]


def model_card(
    spec: ModelSpec,
    version: int,
    *,
    lineage: Lineage,
    evaluation: Any = None,
    approvals: Sequence[Approval] = (),
    gate: Any = None,
    shadow: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of ``spec.name`` ``version``.

    ``evaluation``: an ``Evaluation`` (or its dict), or the stored evaluation document
    ``{"candidate": ..., "champion": ..., "champion_version": ...}``; ``gate``: a
    ``GateResult`` or its dict; ``shadow``: the shadow comparison summary, when there is one.
    """
    governance = spec.governance
    doc = _plain(evaluation)
    if doc is not None and "candidate" not in doc:
        doc = {"candidate": doc, "champion": None, "champion_version": None}
    return ModelCard(
        {
            "schema": SCHEMA,
            "model": spec.name,
            "version": int(version),
            "generated_at": utc_now().isoformat(),
            "risk_class": governance.risk_class,
            "approval_required": governance.approval_required,
            "owner": governance.owner,
            "intended_use": governance.intended_use,
            "limitations": list(governance.limitations),
            "heads": [h.name for h in spec.heads],
            "segments": list(spec.gate.segments),
            "lineage": lineage.to_dict(),
            "evaluation": doc,
            "gate": _plain(gate),
            "shadow": _plain(shadow),
            "approvals": approval_records(approvals),
        }
    )


def store_model_card(registry: ModelRegistry, card: ModelCard) -> None:
    """Write ``model_card.md`` and ``model_card.json`` into the version's run."""
    registry.log_version_artifacts(
        card.name,
        card.version,
        {CARD_MD: card.markdown, CARD_JSON: json.dumps(card.json, indent=2, sort_keys=True)},
    )


def read_model_card(registry: ModelRegistry, name: str, version: int) -> ModelCard:
    """The stored card (FileNotFoundError when the version has none yet)."""
    return ModelCard(json.loads(registry.read_version_artifact(name, version, CARD_JSON)))


def refresh_card_approvals(registry: ModelRegistry, name: str, version: int) -> bool:
    """Re-render the stored card with the version's current decisions; False if no card."""
    try:
        card = read_model_card(registry, name, version)
    except FileNotFoundError:
        return False
    data = {**card.json, "approvals": approval_records(registry.approvals(name, version))}
    store_model_card(registry, ModelCard(data))
    return True


# --- rendering ----------------------------------------------------------------------------


def _f(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _head_rows(scope: str, heads: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [scope, head, m.get("rows"), m.get("accuracy"), m.get("macro_f1"), m.get("ece")]
        for head, m in heads.items()
    ]


def _metrics_section(doc: Mapping[str, Any] | None) -> list[str]:
    out = ["## Metrics (time-split holdout)", ""]
    if not doc or not doc.get("candidate"):
        return [*out, "Not evaluated yet.", ""]
    candidate = doc["candidate"]
    heads = candidate.get("heads", {})
    out += [f"{candidate.get('rows', 'n/a')} holdout rows.", ""]
    out += _table(["rows", "head", "n", "accuracy", "macro F1", "ECE"], _head_rows("all", heads))
    out += ["", "### Per class", ""]
    out += _table(
        ["head", "class", "support", "recall", "note"],
        [
            [
                head,
                label,
                c.get("support"),
                c.get("recall"),
                "" if c.get("known", True) else "not a class of the model",
            ]
            for head, m in heads.items()
            for label, c in m.get("classes", {}).items()
        ],
    )
    segments = candidate.get("segments", {})
    out += ["", "### Per segment", ""]
    if segments:
        rows = [r for s, e in segments.items() for r in _head_rows(s, e.get("heads", {}))]
        out += _table(["segment", "head", "n", "accuracy", "macro F1", "ECE"], rows)
    else:
        out.append("No segments declared.")
    champion = doc.get("champion")
    if champion:
        out += ["", f"### Champion v{doc.get('champion_version')} on the same rows", ""]
        out += _table(
            ["rows", "head", "n", "accuracy", "macro F1", "ECE"],
            _head_rows("all", champion.get("heads", {})),
        )
    return [*out, ""]


def _calibration_section(doc: Mapping[str, Any] | None) -> list[str]:
    out = ["## Calibration", ""]
    if not doc or not doc.get("candidate"):
        return [*out, "Not evaluated yet.", ""]
    candidate = doc["candidate"]
    bins = candidate.get("ece_bins", "n/a")
    out.append(
        f"Expected calibration error over {bins} equal-width confidence bins (0 is perfectly "
        "calibrated: stated confidence equals observed accuracy)."
    )
    out.append("")
    out += _table(
        ["head", "ECE"], [[h, m.get("ece")] for h, m in candidate.get("heads", {}).items()]
    )
    return [*out, ""]


def _data_section(lineage: Mapping[str, Any]) -> list[str]:
    contracts = lineage.get("contract_versions", {})
    features = lineage.get("features", [])
    return [
        "## Data",
        "",
        f"- Training table: `{lineage.get('training_table')}` (time column "
        f"`{lineage.get('time_column')}`)",
        f"- Training window: {' .. '.join(lineage.get('train_window', []))} "
        f"({lineage.get('rows_train')} rows)",
        f"- Holdout window: {' .. '.join(lineage.get('holdout_window', []))} "
        f"({lineage.get('rows_holdout')} rows)",
        f"- Features ({len(features)}): {', '.join(f'`{f}`' for f in features)}",
        f"- dbt manifest hash: `{lineage.get('dbt_manifest_hash')}`",
        "- Input contracts: "
        + (", ".join(f"`{n}` ({h[:12]})" for n, h in contracts.items()) or "none"),
        f"- Code: git `{lineage.get('git_commit')}`; weights sha256 "
        f"`{lineage.get('content_hash')}`; Dagster run `{lineage.get('dagster_run_id')}`",
        "",
    ]


def _limitations(data: Mapping[str, Any]) -> list[str]:
    out = ["## Limitations", ""]
    items = list(data.get("limitations", []))
    doc = data.get("evaluation") or {}
    for head, m in (doc.get("candidate") or {}).get("heads", {}).items():
        items += [f"{head}: {note}" for note in m.get("notes", [])]
    out += [f"- {item}" for item in items] or ["None stated."]
    return [*out, ""]


def _gate_section(gate: Mapping[str, Any] | None) -> list[str]:
    if gate is None:
        return ["## Gate", "", "Not run yet.", ""]
    out = [
        "## Gate",
        "",
        f"**{'passed' if gate.get('passed') else 'FAILED'}**: {gate.get('summary', '')}",
        "",
    ]
    rules = gate.get("rules", [])
    if rules:
        out += _table(
            ["kind", "head", "metric", "class", "value", "threshold", "passed"],
            [
                [
                    r.get("kind"),
                    r.get("head"),
                    r.get("metric"),
                    r.get("label") or "",
                    r.get("value"),
                    r.get("threshold"),
                    "yes" if r.get("passed") else f"no {r.get('reason', '')}".strip(),
                ]
                for r in rules
            ],
        )
    return [*out, ""]


def _flat(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _approvals_section(data: Mapping[str, Any]) -> list[str]:
    out = ["## Approvals", ""]
    required = data.get("approval_required")
    out.append(
        f"Risk class **{data.get('risk_class')}**: "
        + (
            "a person must approve this version before it becomes champion."
            if required
            else "no approval is required before promotion."
        )
    )
    out.append("")
    approvals = data.get("approvals", [])
    if approvals:
        out += _table(
            ["decision", "by", "at (UTC)", "reason"],
            [[a["decision"], a["actor"], a["at"], a["reason"]] for a in approvals],
        )
    else:
        out.append("No decision recorded.")
    return [*out, ""]


def render_markdown(data: Mapping[str, Any]) -> str:
    """The card's Markdown, from its JSON alone."""
    lines = [
        f"# Model card: {data['model']} v{data['version']}",
        "",
        f"Risk class: **{data.get('risk_class')}** · owner: {data.get('owner') or 'not stated'}"
        f" · heads: {', '.join(data.get('heads', []))}",
        "",
        "## Intended use",
        "",
        data.get("intended_use") or "Not stated.",
        "",
    ]
    lines += _data_section(data.get("lineage", {}))
    lines += _metrics_section(data.get("evaluation"))
    lines += _calibration_section(data.get("evaluation"))
    lines += _limitations(data)
    lines += _gate_section(data.get("gate"))
    shadow = data.get("shadow")
    if shadow:
        lines += ["## Shadow", "", *_table(["measure", "value"], _flat(shadow)), ""]
    lines += _approvals_section(data)
    lines.append(f"_Card generated {data.get('generated_at', '')}._")
    return "\n".join(lines) + "\n"
