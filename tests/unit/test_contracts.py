"""The contract runner splits bad records out with the rule they broke, and nothing is lost."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aios_dagster.lib.contracts.landing import land_with_contract
from aios_dagster.lib.contracts.runner import (
    GREAT_EXPECTATIONS,
    PANDAS,
    Contract,
    ContractResult,
    load_contract,
    validate_frame,
)
from aios_dagster.lib.lake import LakeResource

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"


def _customers(**overrides: list) -> pd.DataFrame:
    data = {
        "customer_id": ["C-1", "C-2", "C-3", "C-4"],
        "email_token": ["t1", "t2", "t3", "t4"],
        "phone_token": ["p1", "p2", "p3", "p4"],
        "account_token": ["a1", "a2", "a3", "a4"],
        "segment": ["retail", "premier", "business", "retail"],
        "joined_on": ["2010-01-02", "2012-03-04", "2020-05-06", "2021-07-08"],
        "city": ["Leeds", "York", "Bath", "Hull"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_every_contract_file_loads_with_its_policy() -> None:
    for path in sorted(EXPECTATIONS.glob("*.json")):
        contract = load_contract(path)
        assert contract.record_id and contract.blocking
        assert 0 < contract.max_quarantine_fraction < 1
        assert json.loads(path.read_text())["expectations"], path


def test_bad_rows_are_quarantined_with_rule_and_value() -> None:
    contract = load_contract(EXPECTATIONS / "customers.json")
    frame = _customers(segment=["retail", "UNKNOWN", "business", "retail"])
    result = validate_frame(frame, contract, source="crm.csv")
    good, bad = result.split(frame)
    assert len(good) == 3 and "C-2" not in set(good["customer_id"])
    assert bad.to_dict("records") == [
        {
            "dataset": "customers",
            "record_id": "C-2",
            "contract": "customers@v1",
            "rule": "column_values_to_be_in_set(segment)",
            "column": "segment",
            "value": "UNKNOWN",
            "source": "crm.csv",
            "offset": "1",
        }
    ]
    # 1 of 4 records is far above the 1% tolerance: the contract as a whole fails.
    assert not result.passed


def test_clean_batch_passes() -> None:
    result = validate_frame(
        _customers(), load_contract(EXPECTATIONS / "customers.json"), source="x"
    )
    assert result.passed and result.quarantined_records == 0


def test_missing_column_is_a_table_failure_and_lands_nothing(tmp_path: Path) -> None:
    contract = load_contract(EXPECTATIONS / "customers.json")
    frame = _customers().drop(columns=["segment"])
    lake = LakeResource(root=str(tmp_path))
    with pytest.raises(ValueError, match=r"crm\.csv.*customers@v1.*table_columns_to_match_set"):
        land_with_contract(lake, "customers", frame, contract, source="crm.csv")
    assert not any(tmp_path.iterdir())


def test_landing_writes_every_row_exactly_once(tmp_path: Path) -> None:
    contract = load_contract(EXPECTATIONS / "customers.json")
    frame = _customers(customer_id=["C-1", "C-2", "C-2", None])
    lake = LakeResource(root=str(tmp_path))
    landing = land_with_contract(lake, "customers", frame, contract, source="crm.csv")
    landed = lake.read("raw_customers").to_pandas()
    quarantined = lake.read("quarantine_customers").to_pandas()
    assert landing.rows_landed == len(landed) == 2  # C-1 and the first copy of C-2
    assert landing.records_quarantined == 2
    assert quarantined["offset"].nunique() == 2  # the null-id record is counted, not merged
    assert set(quarantined["rule"]) == {
        "duplicate_of(1)",
        "column_values_to_not_be_null(customer_id)",
    }
    # Re-landing the same batch replaces, never appends.
    land_with_contract(lake, "customers", frame, contract, source="crm.csv")
    assert len(lake.read("raw_customers")) == 2
    assert len(lake.read("quarantine_customers")) == len(quarantined)


def test_emails_dated_in_the_future_are_quarantined() -> None:
    contract = load_contract(EXPECTATIONS / "emails.json")
    now = pd.Timestamp("2026-11-24T12:00:00Z")
    frame = pd.DataFrame(
        {
            "email_id": ["EM-1", "EM-2"],
            "message_id": ["EM-1@x", "EM-2@x"],
            "in_reply_to": [None, None],
            "thread_id": ["EM-1", "EM-2"],
            "sender_token": ["t1", "t2"],
            "subject": ["s", "s"],
            "body": ["b", "b"],
            "received_at": [now - pd.Timedelta(hours=1), pd.Timestamp("2030-01-01T00:00:00Z")],
            "attachment_names": [[], []],
            "has_html": [False, False],
            "source_file": ["EM-1.eml", "EM-2.eml"],
            "parse_error": [None, None],
        }
    )
    result = validate_frame(frame, contract, source="inbox", now=now.to_pydatetime())
    assert result.quarantine[["record_id", "rule"]].to_dict("records") == [
        {"record_id": "EM-2", "rule": "column_values_to_be_between(received_at)"}
    ]


# --- The pandas fast path and GE agree rule by rule --------------------------------------------


def _contract(
    expectations: list[dict], *, record_id: str = "id", on_duplicate: str = "quarantine_all"
) -> Contract:
    """A contract built in the test, so every rule type, option and null case is in reach."""
    suite = {
        "name": "probe",
        "meta": {"contract": {"record_id": record_id, "version": 3}},
        "expectations": expectations,
    }
    return Contract(
        name="probe",
        version=3,
        record_id=record_id,
        severity="error",
        max_quarantine_fraction=0.5,
        suite=suite,
        path=EXPECTATIONS / "probe.json",
        on_duplicate=on_duplicate,
    )


def test_a_duplicated_id_lands_its_first_copy_and_quarantines_the_others(tmp_path: Path) -> None:
    contract = load_contract(EXPECTATIONS / "customers.json")
    frame = _customers(customer_id=["C-1", "C-2", "C-2", "C-2"])
    refs = [f"crm.csv:{line}" for line in range(2, 6)]
    lake = LakeResource(root=str(tmp_path))
    landing = land_with_contract(lake, "customers", frame, contract, source="crm.csv", refs=refs)
    landed = lake.read("raw_customers").to_pandas()
    assert landed[["customer_id", "city"]].values.tolist() == [["C-1", "Leeds"], ["C-2", "York"]]
    quarantined = lake.read("quarantine_customers").to_pandas()
    assert quarantined[["record_id", "rule", "offset"]].to_dict("records") == [
        {"record_id": "C-2", "rule": "duplicate_of(crm.csv:3)", "offset": "crm.csv:4"},
        {"record_id": "C-2", "rule": "duplicate_of(crm.csv:3)", "offset": "crm.csv:5"},
    ]
    assert landing.result.summary() == {"column_values_to_be_unique(customer_id)": 2}


def test_the_kept_copy_is_the_first_that_passes_the_other_rules() -> None:
    contract = load_contract(EXPECTATIONS / "customers.json")
    frame = _customers(
        customer_id=["C-1", "C-2", "C-2", "C-3"],
        segment=["retail", "UNKNOWN", "premier", "retail"],
    )
    for engine in ("auto", "ge"):
        result = validate_frame(frame, contract, source="crm.csv", engine=engine)
        good, bad = result.split(frame)
        assert good["segment"].tolist() == ["retail", "premier", "retail"]
        assert sorted(zip(bad["offset"], bad["rule"], strict=True)) == [
            ("1", "column_values_to_be_in_set(segment)"),
            ("1", "duplicate_of(2)"),
        ]


def test_every_duplicate_is_quarantined_where_the_contract_says_so() -> None:
    frame = pd.DataFrame({"id": ["A", "B", "B"]})
    rules = [_rule("column_values_to_be_unique", "id")]
    for policy, rules_by_offset in (
        (
            "quarantine_all",
            {"1": "column_values_to_be_unique(id)", "2": "column_values_to_be_unique(id)"},
        ),
        ("keep_last", {"1": "duplicate_of(2)"}),
    ):
        result = _assert_agree(frame, _contract(rules, on_duplicate=policy), fast_rules=1)
        assert dict(zip(result.quarantine["offset"], result.quarantine["rule"], strict=True)) == (
            rules_by_offset
        )


def _rule(kind: str, column: str | None = None, **kwargs: object) -> dict:
    return {
        "type": f"expect_{kind}",
        "kwargs": {**({"column": column} if column else {}), **kwargs},
    }


def _probe_frame() -> pd.DataFrame:
    """Nulls of each kind (None, NaN, NaT, pd.NA), duplicates, mixed types, an all-null column."""
    return pd.DataFrame(
        {
            "id": ["A", "B", "B", None, "E", np.nan, "G", "H"],
            "code": ["x", "y", "z", None, "x", 1, pd.NA, "y"],
            "day": ["2026-01-01", "2026-1-2", 20260103, None, "2026-01-05", "x", "2026-01-07", "d"],
            "amount": [1.0, np.nan, 2.5, 2.5, np.nan, 3.0, 4.0, 5.0],
            "at": pd.to_datetime(["2026-01-01", None, "2026-01-03", "2026-01-04"] * 2, utc=True),
            "nothing": [None] * 8,
            "n": pd.array([1, 2, None, 2, 5, 6, 7, 8], dtype="Int64"),
        }
    )


def _all_rules(mostly: float | None = None) -> list[dict]:
    extra = {} if mostly is None else {"mostly": mostly}
    return [
        _rule("table_columns_to_match_set", column_set=list(_probe_frame().columns)),
        _rule("table_columns_to_match_set", column_set=["id", "code"], exact_match=False),
        _rule("table_columns_to_match_set", column_set=["id", "code"], exact_match=True),
        _rule("table_columns_to_match_set", column_set=["id", "absent"], exact_match=False),
        *(_rule("column_values_to_not_be_null", c, **extra) for c in _probe_frame().columns),
        *(_rule("column_values_to_be_null", c, **extra) for c in ("nothing", "amount", "at")),
        *(_rule("column_values_to_be_unique", c, **extra) for c in ("id", "amount", "n", "at")),
        _rule("column_values_to_be_unique", "nothing", **extra),
        _rule("column_values_to_be_in_set", "code", value_set=["x", "y"], **extra),
        _rule("column_values_to_be_in_set", "code", value_set=["x", "y", 1], **extra),
        _rule("column_values_to_be_in_set", "n", value_set=[1, 2, 5], **extra),
        _rule("column_values_to_be_in_set", "nothing", value_set=["x"], **extra),
        _rule("column_values_to_match_regex", "day", regex=r"^\d{4}-\d{2}-\d{2}$", **extra),
        _rule("column_values_to_match_regex", "code", regex="^[xy1]$", **extra),
        _rule("column_values_to_match_regex", "amount", regex=r"\.5$", **extra),
    ]


def _verdicts(result: ContractResult) -> list[tuple]:
    return [(o.rule, o.success, o.unexpected_count, o.row_level) for o in result.outcomes]


def _assert_agree(frame: pd.DataFrame, contract: Contract, *, fast_rules: int) -> ContractResult:
    fast = validate_frame(frame, contract, source="probe.csv", engine="auto")
    ge = validate_frame(frame, contract, source="probe.csv", engine="ge")
    assert _verdicts(fast) == _verdicts(ge)
    pd.testing.assert_frame_equal(fast.quarantine, ge.quarantine)
    pd.testing.assert_index_equal(fast.bad_index, ge.bad_index)
    assert {o.engine for o in ge.outcomes} == {GREAT_EXPECTATIONS}
    assert sum(o.engine == PANDAS for o in fast.outcomes) == fast_rules
    return fast


@pytest.mark.parametrize("mostly", [None, 0.0, 0.5, 2 / 3, 0.75, 0.7500001, 1.0])
def test_fast_path_agrees_with_ge_rule_by_rule(mostly: float | None) -> None:
    """Verdict, count, rows and quarantine text agree, including null handling and ``mostly``.

    The ``mostly`` values sit on the borders the probe frame produces (2 of 8 and 2 of 6 bad are
    exactly 0.75 and 2/3 good), where a rounding difference would flip a verdict.
    """
    rules = _all_rules(mostly)
    result = _assert_agree(_probe_frame(), _contract(rules), fast_rules=len(rules))
    _assert_agree(
        _probe_frame(), _contract(rules, on_duplicate="keep_first"), fast_rules=len(rules)
    )
    if mostly is None:
        counts = [(o.rule, o.unexpected_count) for o in result.outcomes if o.row_level]
        assert ("column_values_to_be_unique(id)", 2) in counts  # B twice; None/NaN aren't dupes
        assert ("column_values_to_be_in_set(code)", 2) in counts  # "z" and 1; None/pd.NA ignored
        assert ("column_values_to_match_regex(day)", 4) in counts
        assert ("column_values_to_be_in_set(nothing)", 0) in counts  # all null: vacuously true


def test_fast_path_agrees_on_an_empty_frame_and_a_clean_one() -> None:
    rules = _all_rules()
    _assert_agree(_probe_frame().iloc[:0], _contract(rules), fast_rules=len(rules))
    clean = _probe_frame().dropna(subset=["id"]).drop_duplicates(subset=["id"])
    _assert_agree(clean, _contract(rules), fast_rules=len(rules))


def test_rules_the_fast_path_does_not_model_go_to_ge() -> None:
    """A row condition, an unsupported type, a missing column: GE evaluates them, the same run."""
    frame = _probe_frame()
    rules = [
        _rule("column_values_to_not_be_null", "id"),
        _rule(
            "column_values_to_be_in_set",
            "code",
            value_set=["x"],
            row_condition='id=="A"',
            condition_parser="pandas",
        ),
        _rule("column_values_to_be_between", "amount", min_value=2, max_value=4),
        _rule("column_values_to_not_be_null", "absent"),
        _rule("column_values_to_be_unique", "id", catch_exceptions=False),
    ]
    result = _assert_agree(frame, _contract(rules), fast_rules=1)
    engines = {o.rule: o.engine for o in result.outcomes}
    assert engines["column_values_to_not_be_null(id)"] == PANDAS
    assert engines["column_values_to_be_between(amount)"] == GREAT_EXPECTATIONS
    missing = result.outcomes[3]
    assert (missing.success, missing.row_level, missing.unexpected_count) == (False, False, 1)
    assert [o.rule for o in result.outcomes] == [_rule_name_of(r) for r in rules]


def _rule_name_of(rule: dict) -> str:
    name = rule["type"].removeprefix("expect_")
    column = rule["kwargs"].get("column")
    return f"{name}({column})" if column else name


def test_quarantine_rows_name_position_and_null_ids() -> None:
    """``offset`` is the row's position whatever the frame's index; a null id stays null."""
    frame = _probe_frame().set_index(pd.Index([100 + i for i in range(8)]))
    contract = _contract(
        [
            _rule("column_values_to_not_be_null", "id"),
            _rule("column_values_to_be_in_set", "code", value_set=["x", "y"]),
        ]
    )
    for engine in ("auto", "ge"):
        result = validate_frame(frame, contract, source="probe.csv", engine=engine)
        assert result.quarantine.to_dict("records") == [
            {
                "dataset": "probe",
                "record_id": None,
                "contract": "probe@v3",
                "rule": "column_values_to_not_be_null(id)",
                "column": "id",
                "value": None,
                "source": "probe.csv",
                "offset": str(offset),
            }
            for offset in (3, 5)
        ] + [
            {
                "dataset": "probe",
                "record_id": record_id,
                "contract": "probe@v3",
                "rule": "column_values_to_be_in_set(code)",
                "column": "code",
                "value": value,
                "source": "probe.csv",
                "offset": offset,
            }
            for record_id, value, offset in (("B", "z", "2"), (None, "1", "5"))
        ]
        assert result.bad_index.tolist() == [2, 3, 5]
        assert result.quarantined_records == 3
        good, _ = result.split(frame.reset_index(drop=True))
        assert len(good) == 5


# Rule types the fast path evaluates, with the kwargs it models (anything else goes to GE).
FAST_RULES = {
    "expect_table_columns_to_match_set": {"column_set", "exact_match"},
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_null": {"column", "mostly"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
    "expect_column_values_to_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_values_to_match_regex": {"column", "mostly", "regex"},
}


@pytest.mark.parametrize("path", sorted(EXPECTATIONS.glob("*.json")), ids=lambda p: p.stem)
def test_every_contract_file_gets_the_same_verdicts_from_both_engines(path: Path) -> None:
    """The real contracts on a frame of their own columns with a few bad values planted."""
    contract = load_contract(path)
    expectations = contract.suite["expectations"]
    columns = [e["kwargs"]["column"] for e in expectations if "column" in e["kwargs"]]
    for e in expectations:
        columns += e["kwargs"].get("column_set", [])
    columns = list(dict.fromkeys(columns))
    frame = pd.DataFrame({c: [f"{c}-{i % 5}" for i in range(10)] for c in columns})
    frame.loc[[1, 7], columns[0]] = None
    supported = sum(
        e["type"] in FAST_RULES and set(e["kwargs"]) <= FAST_RULES[e["type"]] for e in expectations
    )
    _assert_agree(frame, contract, fast_rules=supported)


def test_an_unknown_duplicate_policy_names_the_file_and_the_choices(tmp_path: Path) -> None:
    data = json.loads((EXPECTATIONS / "customers.json").read_text())
    data["meta"]["contract"]["on_duplicate"] = "keep_newest"
    path = tmp_path / "customers.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"customers\.json: meta\.contract\.on_duplicate .*keep_first"
    ):
        load_contract(path)
