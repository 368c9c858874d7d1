"""The contract runner splits bad records out with the rule they broke, and nothing is lost."""

import json
from pathlib import Path

import pandas as pd
import pytest

from aios_dagster.lib.connectors.lake import LakeResource
from aios_dagster.lib.contracts.landing import land_with_contract
from aios_dagster.lib.contracts.runner import load_contract, validate_frame

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
    assert landing.rows_landed == len(landed) == 1
    assert landing.records_quarantined == 3
    assert quarantined["offset"].nunique() == 3  # the null-id record is counted, not merged
    assert set(quarantined["rule"]) == {
        "column_values_to_be_unique(customer_id)",
        "column_values_to_not_be_null(customer_id)",
    }
    # Re-landing the same batch replaces, never appends.
    land_with_contract(lake, "customers", frame, contract, source="crm.csv")
    assert len(lake.read("raw_customers")) == 1
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
