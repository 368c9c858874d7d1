"""Run a data contract (a Great Expectations suite kept as JSON in ``expectations/``).

The contract is GE's own suite format plus a ``meta.contract`` block that says which column
identifies a record, how severe a failure is and how much quarantine is tolerable. Row-level
failures name their rows (GE's ``unexpected_index_list``), so bad records can be split out with
the rule they broke while good ones continue; table-level failures (a missing column) cannot be
split and fail the contract as a whole.

Two evaluators, one meaning: the simple rule types are evaluated by the pandas fast path
(``contracts.fast_path``), which GE's own pandas metrics would agree with; every other rule, and
any rule using an option the fast path does not model (``row_condition``, ``catch_exceptions``,
a suite parameter, a missing column, ...), goes to GE in the same run, and ``engine="ge"`` sends
every rule to GE. The unit tests hold the two to the same verdict, count, rows and quarantine
text, rule by rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from aios_dagster.lib.contracts.duplicates import (
    DUPLICATE_POLICIES,
    DuplicatePolicy,
    extra_copies,
)
from aios_dagster.lib.contracts.fast_path import PANDAS, Verdict, fast_evaluate, mostly_success

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

__all__ = [
    "GREAT_EXPECTATIONS",
    "PANDAS",
    "QUARANTINE_COLUMNS",
    "Contract",
    "ContractResult",
    "RuleOutcome",
    "load_contract",
    "resolve_runtime_values",
    "validate_frame",
]

QUARANTINE_COLUMNS = (
    "dataset",
    "record_id",
    "contract",
    "rule",
    "column",
    "value",
    "source",
    "offset",  # row position in the source batch: identifies records whose id is missing
)


@dataclass(frozen=True)
class Contract:
    """A parsed contract file: the GE suite and how failures are handled."""

    name: str
    version: int
    record_id: str
    severity: str
    max_quarantine_fraction: float
    suite: dict[str, Any]
    path: Path
    # What a repeated value of a uniqueness rule does: see ``contracts.duplicates``.
    on_duplicate: DuplicatePolicy = "quarantine_all"

    @property
    def blocking(self) -> bool:
        return self.severity == "error"


def load_contract(path: Path) -> Contract:
    data = json.loads(path.read_text())
    meta = data.get("meta", {}).get("contract")
    if meta is None:
        raise ValueError(f"{path}: suite has no meta.contract block (record_id, severity, ...)")
    on_duplicate = meta.get("on_duplicate", "quarantine_all")
    if on_duplicate not in DUPLICATE_POLICIES:
        raise ValueError(
            f"{path}: meta.contract.on_duplicate must be one of {', '.join(DUPLICATE_POLICIES)},"
            f" not {on_duplicate!r}"
        )
    return Contract(
        name=data["name"],
        version=int(meta.get("version", 1)),
        record_id=meta["record_id"],
        severity=meta.get("severity", "error"),
        max_quarantine_fraction=float(meta.get("max_quarantine_fraction", 0.01)),
        suite=data,
        path=path,
        on_duplicate=on_duplicate,
    )


@dataclass(frozen=True)
class RuleOutcome:
    """One expectation's result, named so a person can read it in the UI."""

    rule: str
    column: str | None
    success: bool
    unexpected_count: int
    row_level: bool
    description: str
    # Which evaluator produced it ("pandas" fast path or "great_expectations"): for tracing a
    # surprising verdict, and for the tests that hold the two to the same answer.
    engine: str = "great_expectations"


@dataclass
class ContractResult:
    contract: Contract
    rows: int
    outcomes: list[RuleOutcome]
    quarantine: pd.DataFrame = field(repr=False)
    bad_index: pd.Index = field(repr=False)

    @property
    def table_failures(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and not o.row_level]

    @property
    def quarantined_records(self) -> int:
        return len(self.bad_index)

    @property
    def quarantine_fraction(self) -> float:
        return self.quarantined_records / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        """Passed means: no table-level failure and quarantine within the contract's tolerance."""
        return not self.table_failures and (
            self.quarantine_fraction <= self.contract.max_quarantine_fraction
        )

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Good rows (to the lake) and bad rows (to quarantine, one row per broken rule)."""
        good = frame.drop(index=self.bad_index)
        return good.reset_index(drop=True), self.quarantine

    def summary(self) -> dict[str, int]:
        return {o.rule: o.unexpected_count for o in self.outcomes if not o.success}


Engine = Literal["auto", "ge"]

GREAT_EXPECTATIONS = "great_expectations"

# What GE computes for us: every unexpected row's index (COMPLETE), but not the pandas "query"
# string that repeats the whole index list as text and costs one more full-frame filter per rule.
_GE_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


def _rule_name(expectation_type: str, column: str | None) -> str:
    rule = expectation_type.removeprefix("expect_")
    return f"{rule}({column})" if column else rule


_NOW = re.compile(r"^\$now(?:(?P<sign>[+-])(?P<days>\d+)d)?$")


def resolve_runtime_values(value: Any, now: datetime) -> Any:
    """Expand ``"$now"``, ``"$now+1d"``, ``"$now-30d"`` in expectation kwargs to ISO instants.

    Lets a contract file state rules relative to validation time (an email cannot be dated
    tomorrow) while staying a plain, reviewable GE suite.
    """
    if isinstance(value, dict):
        return {k: resolve_runtime_values(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_runtime_values(v, now) for v in value]
    if isinstance(value, str) and (m := _NOW.match(value)):
        days = int(m["days"] or 0) * (-1 if m["sign"] == "-" else 1)
        return (now + timedelta(days=days)).isoformat()
    return value


def _ge_context() -> Any:
    """An ephemeral GE context with progress bars off (GE imports lazily: ~4-7 s, once).

    Built per validation on purpose: after the import it costs a few milliseconds, and a fresh
    context means no data source, suite or stored result outlives the run (a shared one would
    accumulate them). Analytics are switched off by ``GX_ANALYTICS_ENABLED=false``, set by the
    CLI, the Makefile and the deployment's environment rather than by library code.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _suite_spec(contract: Contract, expectations: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {k: v for k, v in contract.suite.items() if k in {"name", "meta"}}
    return {**spec, "expectations": expectations}


def _from_ge(result: Any) -> Verdict:
    """A GE result as a verdict: row-level iff GE listed the rows (an exception lists none)."""
    index_list = result.result.get("unexpected_index_list")
    row_level = index_list is not None
    count = (
        int(result.result.get("unexpected_count") or 0) if row_level else int(not result.success)
    )
    index = np.asarray(index_list, dtype=np.int64) if row_level else None
    return Verdict(bool(result.success), count, row_level, index, GREAT_EXPECTATIONS)


def _validate_with_ge(
    frame: pd.DataFrame, contract: Contract, expectations: list[dict[str, Any]]
) -> list[Verdict]:
    """Validate ``expectations`` with GE; verdicts come back in the order given.

    A ``ValidationDefinition`` loads the batch once (``Batch.validate`` loads and fingerprints it
    twice). GE lists failed-with-exception results first, so results are matched back by id.
    """
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite

    ctx = _ge_context()
    suite = ctx.suites.add(ExpectationSuite(**_suite_spec(contract, expectations)))
    batch_definition = (
        ctx.data_sources.add_pandas(f"{contract.name}_src")
        .add_dataframe_asset(contract.name)
        .add_batch_definition_whole_dataframe("all")
    )
    validation = ctx.validation_definitions.add(
        gx.ValidationDefinition(
            name=f"{contract.name}_contract", data=batch_definition, suite=suite
        )
    )
    result = validation.run(
        batch_parameters={"dataframe": frame}, result_format=dict(_GE_RESULT_FORMAT)
    )
    by_id = {r.expectation_config.id: r for r in result.results}
    return [_from_ge(by_id[e.id]) for e in suite.expectations]


def _text(values: pd.Series) -> np.ndarray:
    """Values as text, nulls as None (``astype(str)`` equals ``str()`` per value, vectorised)."""
    text = values.astype(str).to_numpy(dtype=object)
    text[values.isna().to_numpy()] = None
    return text


def _const(value: str | None, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object)


def _quarantine(
    frame: pd.DataFrame,
    contract: Contract,
    source: str,
    failed: Sequence[tuple[str, str | None, np.ndarray, np.ndarray | None]],
) -> tuple[pd.DataFrame, pd.Index]:
    """One quarantine row per (failed rule, row), built column-wise from the failing positions.

    Each failure is (rule, column, positions, per-row rule text or None for the rule's name).

    A record whose id is null gets a null ``record_id`` (never the text "None"/"nan"): its
    ``offset`` is what identifies it.
    """
    columns: dict[str, list[np.ndarray]] = {c: [] for c in QUARANTINE_COLUMNS}
    label = f"{contract.name}@v{contract.version}"
    ids = frame[contract.record_id] if contract.record_id in frame.columns else None
    for rule, column, index, row_rules in failed:
        n = len(index)
        columns["dataset"].append(_const(contract.name, n))
        columns["record_id"].append(_const(None, n) if ids is None else _text(ids.take(index)))
        columns["contract"].append(_const(label, n))
        columns["rule"].append(_const(rule, n) if row_rules is None else row_rules)
        columns["column"].append(_const(column, n))
        columns["value"].append(
            _text(frame[column].take(index)) if column in frame.columns else _const(None, n)
        )
        columns["source"].append(_const(source, n))
        columns["offset"].append(index.astype(str).astype(object))
    data = {
        c: np.concatenate(parts) if parts else np.empty(0, dtype=object)
        for c, parts in columns.items()
    }
    positions = [index for _, _, index, _ in failed]
    bad = np.unique(np.concatenate(positions)) if positions else np.empty(0, dtype=np.int64)
    return pd.DataFrame(data, columns=list(QUARANTINE_COLUMNS)), pd.Index(bad, dtype="int64")


_UNIQUE = "expect_column_values_to_be_unique"


def _keep_one_copy(
    frame: pd.DataFrame,
    contract: Contract,
    expectations: Sequence[Expectation],
    verdicts: Sequence[Verdict | None],
    ref_of: Callable[[int], str] | None,
) -> list[tuple[Verdict, np.ndarray | None]]:
    """Verdicts with the contract's duplicate policy applied to its uniqueness rules.

    A uniqueness rule then fails only the copies that do not land, each with a per-row
    ``duplicate_of(<kept copy>)`` reason; every other verdict is returned as it was.
    """
    done = [v for v in verdicts if v is not None]
    others = [
        v.index
        for e, v in zip(expectations, done, strict=True)
        if e.configuration.type != _UNIQUE and v.index is not None and not v.success
    ]
    other_failures = np.unique(np.concatenate(others)) if others else np.empty(0, np.int64)
    final: list[tuple[Verdict, np.ndarray | None]] = []
    for expectation, verdict in zip(expectations, done, strict=True):
        column = expectation.configuration.kwargs.get("column")
        copies = None
        if (
            expectation.configuration.type == _UNIQUE
            and verdict.index is not None
            and isinstance(column, str)
            and column in frame.columns
        ):
            copies = extra_copies(
                frame[column], verdict.index, contract.on_duplicate, other_failures
            )
        if copies is None:
            final.append((verdict, None))
            continue
        considered = int(frame[column].notna().sum())
        mostly = getattr(expectation, "mostly", None)
        mostly = 1.0 if mostly is None else float(mostly)
        count = len(copies.index)
        success = considered == 0 or mostly_success(considered, count, mostly)
        kept = Verdict(success, count, True, copies.index, verdict.engine)
        final.append((kept, copies.rules(ref_of)))
    return final


def validate_frame(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source: str,
    now: datetime | None = None,
    engine: Engine = "auto",
    ref_of: Callable[[int], str] | None = None,
) -> ContractResult:
    """Validate ``frame`` against ``contract``; ``source`` names where the rows came from.

    ``engine="auto"`` evaluates the simple rule types with pandas and the rest with GE (see the
    module docstring); ``engine="ge"`` has GE evaluate every rule, for comparison or doubt.
    Outcomes are in the contract's order; quarantine rows are by rule, then by row. ``ref_of``
    names row ``i``'s place in the source (asked only for kept copies of duplicated records),
    for the ``duplicate_of(...)`` reason; without it the reason gives the row's position.
    """
    from great_expectations.core import ExpectationSuite

    if engine not in ("auto", "ge"):
        raise ValueError(f"engine must be 'auto' or 'ge', not {engine!r}")
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)  # offsets are positions; copies, so only if needed
    specs: list[dict[str, Any]] = resolve_runtime_values(
        list(contract.suite["expectations"]), now or datetime.now(UTC)
    )
    # GE parses the whole contract either way: same validation errors and defaults for both.
    expectations = ExpectationSuite(**_suite_spec(contract, specs)).expectations
    fast_ok = engine == "auto" and frame.columns.is_unique
    verdicts: list[Verdict | None] = [
        fast_evaluate(frame, e) if fast_ok else None for e in expectations
    ]
    rest = [i for i, v in enumerate(verdicts) if v is None]
    if rest:
        for i, verdict in zip(
            rest, _validate_with_ge(frame, contract, [specs[i] for i in rest]), strict=True
        ):
            verdicts[i] = verdict

    outcomes: list[RuleOutcome] = []
    failed: list[tuple[str, str | None, np.ndarray, np.ndarray | None]] = []
    final = _keep_one_copy(frame, contract, expectations, verdicts, ref_of)
    for expectation, (verdict, row_rules) in zip(expectations, final, strict=True):
        config = expectation.configuration
        column = config.kwargs.get("column")
        rule = _rule_name(config.type, column)
        outcomes.append(
            RuleOutcome(
                rule=rule,
                column=column,
                success=verdict.success,
                unexpected_count=verdict.unexpected_count,
                row_level=verdict.row_level,
                description=str((config.meta or {}).get("why", rule)),
                engine=verdict.engine,
            )
        )
        if not verdict.success and verdict.row_level and verdict.index is not None:
            failed.append((rule, column, verdict.index, row_rules))
    quarantine, bad_index = _quarantine(frame, contract, source, failed)
    return ContractResult(
        contract=contract,
        rows=len(frame),
        outcomes=outcomes,
        quarantine=quarantine,
        bad_index=bad_index,
    )
