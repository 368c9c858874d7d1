"""Run a data contract (a Great Expectations suite kept as JSON in ``expectations/``).

The contract is GE's own suite format plus a ``meta.contract`` block that says which column
identifies a record, how severe a failure is and how much quarantine is tolerable. Row-level
failures name their rows (GE's ``unexpected_index_list``), so bad records can be split out with
the rule they broke while good ones continue; table-level failures (a missing column) cannot be
split and fail the contract as a whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

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

    @property
    def blocking(self) -> bool:
        return self.severity == "error"


def load_contract(path: Path) -> Contract:
    data = json.loads(path.read_text())
    meta = data.get("meta", {}).get("contract")
    if meta is None:
        raise ValueError(f"{path}: suite has no meta.contract block (record_id, severity, ...)")
    return Contract(
        name=data["name"],
        version=int(meta.get("version", 1)),
        record_id=meta["record_id"],
        severity=meta.get("severity", "error"),
        max_quarantine_fraction=float(meta.get("max_quarantine_fraction", 0.01)),
        suite=data,
        path=path,
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


def _rule_name(config: Any) -> tuple[str, str | None]:
    kwargs = config.kwargs
    column = kwargs.get("column")
    rule = config.type.removeprefix("expect_")
    return (f"{rule}({column})" if column else rule), column


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
    """An ephemeral GE context with progress bars off (GE imports lazily: ~7 s).

    Analytics are switched off by ``GX_ANALYTICS_ENABLED=false``, set by the CLI, the Makefile
    and the deployment's environment rather than by library code.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def validate_frame(
    frame: pd.DataFrame, contract: Contract, *, source: str, now: datetime | None = None
) -> ContractResult:
    """Validate ``frame`` against ``contract``; ``source`` names where the rows came from."""
    from great_expectations.core import ExpectationSuite

    frame = frame.reset_index(drop=True)
    ctx = _ge_context()
    suite_spec = {k: v for k, v in contract.suite.items() if k in {"name", "expectations", "meta"}}
    suite_spec["expectations"] = resolve_runtime_values(
        suite_spec["expectations"], now or datetime.now(UTC)
    )
    suite = ctx.suites.add(ExpectationSuite(**suite_spec))
    batch = (
        ctx.data_sources.add_pandas(f"{contract.name}_src")
        .add_dataframe_asset(contract.name)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})

    outcomes: list[RuleOutcome] = []
    bad_rows: list[dict[str, Any]] = []
    for r in result.results:
        rule, column = _rule_name(r.expectation_config)
        index_list = r.result.get("unexpected_index_list")
        row_level = index_list is not None
        count = int(r.result.get("unexpected_count") or 0) if row_level else int(not r.success)
        if r.exception_info and r.exception_info.get("raised_exception"):
            row_level = False
            count = 1
        outcomes.append(
            RuleOutcome(
                rule=rule,
                column=column,
                success=bool(r.success),
                unexpected_count=count,
                row_level=row_level,
                description=str(r.expectation_config.meta.get("why", rule)),
            )
        )
        if not r.success and row_level:
            for idx in index_list:
                value = frame.at[idx, column] if column in frame.columns else None
                bad_rows.append(
                    {
                        "dataset": contract.name,
                        "record_id": str(frame.at[idx, contract.record_id]),
                        "contract": f"{contract.name}@v{contract.version}",
                        "rule": rule,
                        "column": column,
                        "value": None if value is None or pd.isna(value) else str(value),
                        "source": source,
                        "offset": str(idx),
                        "_idx": idx,
                    }
                )
    bad = pd.DataFrame(bad_rows, columns=[*QUARANTINE_COLUMNS, "_idx"])
    bad_index = pd.Index(sorted(set(bad["_idx"].tolist())), dtype="int64")
    return ContractResult(
        contract=contract,
        rows=len(frame),
        outcomes=outcomes,
        quarantine=bad.drop(columns="_idx").reset_index(drop=True),
        bad_index=bad_index,
    )
