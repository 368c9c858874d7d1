"""The decision log's hash chain catches each way a log can be altered, and names the part.

Real Parquet parts in a real lake folder, sealed as scoring seals them; then each tampering a
person with write access could do: edit a value, delete a part, slip a part in, reorder the
chain, and rewrite parts and chain consistently (caught only against Dagster's copy).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.inference import log_chain
from aios_dagster.lib.inference.log_chain import CHAIN_DIR, seal, verify
from aios_dagster.lib.lake import LakeResource

MODEL = "email_router"


def _decisions(n: int, start: int, decision: str = "card_fraud") -> pa.Table:
    return pa.table(
        {
            "record_id": [f"EM-{start + i:07d}" for i in range(n)],
            "model_name": [MODEL] * n,
            "model_version": ["1"] * n,
            "decision": [decision] * n,
            "queue_confidence": [0.5 + i / (4 * n) for i in range(n)],
            "scored_at": [datetime(2026, 11, 22, 9, i % 60, tzinfo=UTC) for i in range(n)],
        }
    )


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Three sealed parts; returns the log folder and part -> head (what Dagster recorded)."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    heads = {}
    for day in range(3):
        part = f"run=r{day}__date=2026-11-2{day}__model={MODEL}__v=1__w=0000000{day}"
        lake.write("decision_log", _decisions(50, day * 100), part=part)
        heads[part] = seal(lake.dataset_dir("decision_log"), MODEL, part).head
    return lake.dataset_dir("decision_log"), heads


def _part(log_dir: Path, index: int) -> Path:
    return sorted(p for p in log_dir.glob("*.parquet"))[index]


def test_an_untouched_log_verifies(log: tuple[Path, dict[str, str]]) -> None:
    log_dir, heads = log
    assert verify(log_dir, heads) == []
    assert log_chain.summary(log_dir)[MODEL]["parts"] == 3


def test_an_edited_value_is_caught_naming_the_part(log: tuple[Path, dict[str, str]]) -> None:
    log_dir, heads = log
    path = _part(log_dir, 1)
    table = pq.read_table(path).to_pylist()
    table[7]["decision"] = "complaints"  # someone re-routes one email after the fact
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
    (problem,) = verify(log_dir, heads)
    assert (problem.kind, problem.part) == ("edited", path.stem)
    assert "50 rows now hash" in str(problem)


def test_a_deleted_part_is_caught(log: tuple[Path, dict[str, str]]) -> None:
    log_dir, heads = log
    path = _part(log_dir, 0)
    path.unlink()
    (problem,) = verify(log_dir, heads)
    assert (problem.kind, problem.part) == ("deleted", path.stem)


def test_an_inserted_part_is_caught(log: tuple[Path, dict[str, str]]) -> None:
    log_dir, heads = log
    forged = log_dir / "run=forged__date=2026-11-21__model=email_router__v=1.parquet"
    pq.write_table(_decisions(5, 900, decision="loans"), forged)
    (problem,) = verify(log_dir, heads)
    assert (problem.kind, problem.part, problem.model) == ("inserted", forged.stem, MODEL)


def test_a_reordered_chain_is_caught(log: tuple[Path, dict[str, str]]) -> None:
    log_dir, heads = log
    chain = log_dir / CHAIN_DIR / f"{MODEL}.jsonl"
    lines = chain.read_text().splitlines()
    chain.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    problems = verify(log_dir, heads)
    assert {p.kind for p in problems} == {"reordered"}
    assert {p.part for p in problems} >= {json.loads(lines[1])["part"]}


def test_a_consistently_rewritten_log_is_caught_against_dagster(
    log: tuple[Path, dict[str, str]],
) -> None:
    """Edit a part *and* rebuild the whole chain: only the independent copy can tell."""
    log_dir, heads = log
    path = _part(log_dir, 2)
    pq.write_table(_decisions(50, 200, decision="loans"), path)
    (log_dir / CHAIN_DIR / f"{MODEL}.jsonl").unlink()
    for part in sorted(heads):
        seal(log_dir, MODEL, part)
    assert verify(log_dir) == []  # the folder alone now looks intact
    (problem,) = verify(log_dir, heads)
    assert (problem.kind, problem.part) == ("chain-rewritten", path.stem)


def test_sealing_is_idempotent_and_a_sealed_part_is_never_rewritten(
    log: tuple[Path, dict[str, str]],
) -> None:
    log_dir, heads = log
    part = sorted(heads)[0]
    assert seal(log_dir, MODEL, part).head == heads[part]  # a retried step: same link
    pq.write_table(_decisions(10, 0), log_dir / f"{part}.parquet")
    with pytest.raises(ValueError, match="is sealed"):
        seal(log_dir, MODEL, part)
