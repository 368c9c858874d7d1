"""Tamper evidence for the decision log: a hash chain per model over its parts.

Regulators ask that a high-risk system keep its decision logs automatically (EU AI Act Art. 12);
an append-only folder alone does not show whether someone later edited, deleted, inserted or
reordered a part. Each committed log part is *sealed*: the SHA-256 of its rows (a canonical
encoding, so the same rows always hash the same however Parquet chunked them) is appended to the
model's chain (``_chain/<model>.jsonl`` beside the parts) together with the hash of the link
before it. :func:`verify` recomputes every part and link and names each part that no longer
matches. Whoever can rewrite the parts could rewrite the chain as well, so each link's head is
also written to the Dagster event log as asset metadata (``decision_log_chain_head``): verifying
against those copies catches a rewritten chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

CHAIN_DIR = "_chain"
GENESIS = "0" * 64
HEAD_KEY = "decision_log_chain_head"
PART_KEY = "decision_log_part"
CHAIN_KEY = "decision_log_chain"  # part -> head, for a step that sealed several parts


@dataclass(frozen=True)
class Link:
    """One sealed part: its rows' hash and the chain's hash up to and including it."""

    seq: int
    part: str
    rows: int
    rows_sha256: str
    prev: str
    head: str


@dataclass(frozen=True)
class Problem:
    """Something the log no longer proves: what, about which part, and how it was found."""

    kind: str  # edited | deleted | inserted | reordered | chain-rewritten
    model: str
    part: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.model} part {self.part}: {self.detail}"


def rows_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 of a part's rows in order, each as sorted-key JSON (the values, not the bytes)."""
    digest, rows = hashlib.sha256(), 0
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
            digest.update(b"\n")
            rows += 1
    return digest.hexdigest(), rows


def _link_head(prev: str, part: str, rows: int, rows_hash: str) -> str:
    return hashlib.sha256(f"{prev}\n{part}\n{rows}\n{rows_hash}".encode()).hexdigest()


def _chain_path(log_dir: Path, model: str) -> Path:
    return log_dir / CHAIN_DIR / f"{model}.jsonl"


def read_chain(log_dir: Path, model: str) -> list[Link]:
    path = _chain_path(log_dir, model)
    if not path.exists():
        return []
    return [Link(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def _locked(log_dir: Path, model: str) -> Iterator[None]:
    """Scoring runs are admitted one at a time, but a seal is cheap to serialise anyway."""
    folder = log_dir / CHAIN_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f".{model}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def seal(log_dir: Path, model: str, part: str) -> Link:
    """Append the committed part ``part`` (its file name without ``.parquet``) to the chain.

    Sealing the same unchanged part again returns its link (a retried step); a sealed part whose
    rows changed is refused: the log is written once.
    """
    path = log_dir / f"{part}.parquet"
    rows_hash, rows = rows_sha256(path)
    with _locked(log_dir, model):
        chain = read_chain(log_dir, model)
        for link in chain:
            if link.part == part:
                if link.rows_sha256 != rows_hash:
                    raise ValueError(
                        f"decision-log part {part} of {model} is sealed (link {link.seq}) and its "
                        "rows changed: the log is written once"
                    )
                return link
        prev = chain[-1].head if chain else GENESIS
        head = _link_head(prev, part, rows, rows_hash)
        link = Link(len(chain), part, rows, rows_hash, prev, head)
        with _chain_path(log_dir, model).open("a") as out:
            out.write(json.dumps(asdict(link), sort_keys=True) + "\n")
        return link


def _log_parts(log_dir: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in log_dir.rglob("*.parquet")
        if not p.name.startswith((".", "_")) and CHAIN_DIR not in p.parts
    }


def _part_model(path: Path) -> str | None:
    column = pq.read_table(path, columns=["model_name"]).column("model_name")
    names = set(column.to_pylist())
    return str(next(iter(names))) if len(names) == 1 else None


def verify(log_dir: Path, recorded: Mapping[str, str] | None = None) -> list[Problem]:
    """Every way the log differs from what was sealed; empty when it is intact.

    ``recorded`` maps a part to the chain head Dagster recorded when it was sealed (see
    :data:`HEAD_KEY`); each must equal the chain's own head for that part.
    """
    problems: list[Problem] = []
    parts = _log_parts(log_dir)
    chained: set[str] = set()
    models = sorted(p.stem for p in (log_dir / CHAIN_DIR).glob("*.jsonl"))
    for model in models:
        prev = GENESIS
        for index, link in enumerate(read_chain(log_dir, model)):
            chained.add(link.part)
            expected = _link_head(link.prev, link.part, link.rows, link.rows_sha256)
            if link.seq != index or link.prev != prev or link.head != expected:
                problems.append(
                    Problem(
                        "reordered",
                        model,
                        link.part,
                        f"link {index} does not follow link {index - 1}: the chain was cut, "
                        "reordered or edited here",
                    )
                )
            prev = link.head
            if (head := (recorded or {}).get(link.part)) is not None and head != link.head:
                problems.append(
                    Problem(
                        "chain-rewritten",
                        model,
                        link.part,
                        f"the chain's head {link.head[:12]} differs from {head[:12]} that Dagster "
                        "recorded when it was sealed",
                    )
                )
            path = parts.get(link.part)
            if path is None:
                problems.append(Problem("deleted", model, link.part, "sealed but missing"))
                continue
            actual, rows = rows_sha256(path)
            if actual != link.rows_sha256:
                problems.append(
                    Problem(
                        "edited",
                        model,
                        link.part,
                        f"{rows} rows now hash {actual[:12]}, sealed {link.rows} rows as "
                        f"{link.rows_sha256[:12]}",
                    )
                )
    for part in sorted(set(recorded or {}) - chained):
        problems.append(
            Problem("deleted", "?", part, "Dagster recorded it as sealed; the chain lost it")
        )
    for part in sorted(set(parts) - chained):
        model = _part_model(parts[part]) or "?"
        problems.append(Problem("inserted", model, part, "in the log folder but never sealed"))
    return problems


def recorded_heads(instance: Any, model_names: Iterable[str]) -> dict[str, str]:
    """Decision-log part -> chain head, as the scoring runs recorded them in ``instance``'s
    event log (the predictions and micro-batch materializations of each model)."""
    import dagster as dg

    heads: dict[str, str] = {}
    for name in model_names:
        for suffix in ("predictions", "microbatch"):
            key, cursor = dg.AssetKey(f"{name}_{suffix}"), None
            while True:
                page = instance.fetch_materializations(key, limit=500, cursor=cursor)
                for record in page.records:
                    meta = record.asset_materialization.metadata
                    if PART_KEY in meta and HEAD_KEY in meta:
                        heads[str(meta[PART_KEY].value)] = str(meta[HEAD_KEY].value)
                    if (chain := meta.get(CHAIN_KEY)) is not None:
                        heads.update({str(k): str(v) for k, v in chain.value.items()})
                if not page.has_more:
                    break
                cursor = page.cursor
    return heads


def summary(log_dir: Path) -> dict[str, Any]:
    """Parts and head of each model's chain (for a report that all is well)."""
    out: dict[str, Any] = {}
    for path in sorted((log_dir / CHAIN_DIR).glob("*.jsonl")):
        chain = read_chain(log_dir, path.stem)
        out[path.stem] = {"parts": len(chain), "head": chain[-1].head if chain else GENESIS}
    return out
