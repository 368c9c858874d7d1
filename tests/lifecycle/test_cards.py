"""Model cards: built from the catalog, lineage, a real evaluation and gate; stored beside the
version; re-rendered when a person decides."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aios_dagster.lib.inference.catalog import GateSpec, GovernanceSpec, HeadFloor, load_catalog
from aios_dagster.lib.lifecycle.cards import (
    ModelCard,
    model_card,
    read_model_card,
    render_markdown,
    store_model_card,
)
from aios_dagster.lib.lifecycle.evaluation import evaluate
from aios_dagster.lib.lifecycle.gate import apply_gate
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.settings import Settings
from tests.lifecycle.registry_support import fresh_registry, lineage_for, register, tiny_model


@pytest.fixture(scope="module")
def spec():
    settings = Settings.from_env({"AIOS_DATA_DIR": "/nonexistent"})
    base = load_catalog(settings.models_dir)["email_router"]
    return replace(
        base,
        name="router",
        governance=GovernanceSpec(
            risk_class="high",
            intended_use="Route support mail to a queue.",
            limitations=("English mail only.",),
            owner="support-operations",
        ),
        gate=GateSpec(floors={"queue": HeadFloor(accuracy=0.99)}, segments=("vip",)),
    )


def _evaluation(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    model = tiny_model(1)
    truth = {
        h: np.array(labels)[rng.integers(0, len(labels), 60)]
        for h, labels in ((h.name, h.labels) for h in model.heads)
    }
    return evaluate(model, x, truth, {"vip": rng.integers(0, 2, 60)})


def test_card_has_every_section_a_reviewer_needs(spec) -> None:
    evaluation = _evaluation(0)
    gate = apply_gate(spec.gate, evaluation, None)
    card = model_card(
        spec,
        3,
        lineage=lineage_for(tiny_model(1)),
        evaluation=evaluation,
        gate=gate,
        shadow={"agreement": 0.97, "days": 2},
    )
    md = card.markdown
    for heading in (
        "# Model card: router v3",
        "## Intended use",
        "## Data",
        "## Metrics (time-split holdout)",
        "### Per class",
        "### Per segment",
        "## Calibration",
        "## Limitations",
        "## Gate",
        "## Shadow",
        "## Approvals",
    ):
        assert heading in md, heading
    assert "Route support mail to a queue." in md
    assert "Risk class: **high**" in md
    assert "a person must approve this version" in md
    assert "No decision recorded." in md
    assert "- English mail only." in md
    assert "**FAILED**" in md and "queue accuracy floor" in md  # the 0.99 floor fails
    queue = evaluation.heads["queue"]
    assert (
        f"| all | queue | 60 | {queue.accuracy:.3f} | {queue.macro_f1:.3f} | {queue.ece:.3f} |"
        in md
    )
    vip = evaluation.segments["vip"].heads["queue"]
    assert f"| vip | queue | {vip.rows} | {vip.accuracy:.3f} |" in md
    assert "`emails` (eeeeeeeeeeee)" in md and "2026-11-09T00:00:00 .. 2026-11-19T23:00:00" in md
    assert "| agreement | 0.970 |" in md
    # The JSON is enough to render the same card again (after an approval, say).
    assert render_markdown(json.loads(json.dumps(card.json))) == md


def test_champion_comparison_from_the_stored_evaluation_document(spec) -> None:
    candidate, champion = _evaluation(0), _evaluation(0)
    doc = {"candidate": candidate.to_dict(), "champion": champion.to_dict(), "champion_version": 2}
    card = model_card(spec, 3, lineage=lineage_for(tiny_model(1)), evaluation=doc)
    assert "### Champion v2 on the same rows" in card.markdown
    assert "## Gate\n\nNot run yet." in card.markdown


def test_card_is_stored_with_the_version_and_shows_later_decisions(spec, tmp_path: Path) -> None:
    registry: ModelRegistry = fresh_registry(tmp_path)
    register(registry, 1)
    card = model_card(spec, 1, lineage=registry.lineage("router", 1), evaluation=_evaluation(1))
    store_model_card(registry, card)
    assert registry.read_version_artifact("router", 1, "model_card.md").decode() == card.markdown
    registry.record_decision("router", 1, "approved", actor="risk-officer", reason="fair on vip")
    stored = read_model_card(registry, "router", 1)
    assert stored.json["approvals"][0]["actor"] == "risk-officer"
    md = registry.read_version_artifact("router", 1, "model_card.md").decode()
    assert "| approved | risk-officer |" in md and "fair on vip" in md
    assert isinstance(stored, ModelCard) and stored.version == 1
