"""Ingest bench input: the CRM/transactions CSV, the connector's ``defs.yaml``, the contract.

Split out of ``ingest.py`` so the generator (deterministic, seeded) can be read on its own; the
constants here are shared with the runners, which must parse and batch exactly as the connector
declared here does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20261124
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
BATCH_ROWS = 100_000  # FilesSourceConfig's default
BLOCK_SIZE = 4 << 20  # FilesSourceConfig's default block_size_bytes
CONNECTOR = "raw_crm_transactions"
DATASET = "crm_transactions"
EMAIL_RX = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


def _words(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=object)


FIRST = _words(
    "olivia amelia isla ava mia ivy lily noah oliver george leo arthur muhammad harry"
    " jack freddie sofia grace ella theo"
)
LAST = _words(
    "smith jones taylor brown williams wilson johnson davies patel wright walker robinson"
    " thompson white hughes edwards green hall wood khan"
)
DOMAINS = np.array(
    ["example.co.uk", "mail.test", "inbox.example", "post.test", "bank-customer.test"],
    dtype=object,
)
CURRENCIES = np.array(["GBP", "EUR", "USD"], dtype=object)
BAD_CURRENCIES = np.array(["JPY", "gbp", "XXX", "EURO"], dtype=object)
BAD_AMOUNTS = np.array(["n/a", "12,50", "1.2.3", "£10.00", "ten"], dtype=object)
CATEGORIES = _words(
    "groceries fuel travel dining utilities rent salary transfer cash fees insurance entertainment"
)
CHANNELS = np.array(["card", "online", "atm", "transfer", "branch", "mobile"], dtype=object)
COUNTRIES = np.array(["GB", "GB", "GB", "IE", "FR", "DE", "ES", "US"], dtype=object)
PHRASES = np.array(
    [
        "recurring payment, no action",
        "customer queried the fee on the phone",
        "refund expected next week",
        "merchant name looks unfamiliar to the customer",
        "duplicate booking suspected, investigating",
        "salary credited early",
        "standing order amended at branch",
        "travel notice on file",
        "chargeback window open until month end",
        "customer satisfied with the explanation",
    ],
    dtype=object,
)
RULES = ("null_txn_id", "bad_currency", "bad_amount")

# Landed columns, in order; the CSV also has email/phone/account_number (tokenized) and
# full_name (dropped).
SCHEMA: dict[str, str] = {
    "txn_id": "string",
    "customer_id": "string",
    "email_token": "string",
    "phone_token": "string",
    "account_token": "string",
    "note": "string",
    "amount": "float64",
    "currency": "string",
    "booked_at": "timestamp",
    "updated_at": "timestamp",
    "value_date": "date",
    "category": "string",
    "merchant": "string",
    "channel": "string",
    "country": "string",
    "mcc": "int64",
    "is_disputed": "bool",
    "is_international": "bool",
    "balance_after": "float64",
    "branch_code": "string",
}


def _codes(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    text = np.char.add(prefix, np.char.zfill(numbers.astype(f"U{width}"), width))
    return text.astype(object)


def _iso(seconds: np.ndarray) -> np.ndarray:
    stamps = np.datetime64("2026-01-01T00:00:00", "s") + seconds.astype("timedelta64[s]")
    return np.datetime_as_string(stamps, unit="s", timezone="UTC").astype(object)


def make_csv(path: Path, rows: int, bad_fraction: float, seed: int = SEED) -> dict[str, Any]:
    """Write the export; return the planted bad rows (0-based data rows) and sample addresses."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    n_customers = max(rows // 20, 1)
    c = np.arange(n_customers)
    cust_email = np.array(
        [f"{FIRST[i % 20]}.{LAST[(i // 20) % 20]}{i}@{DOMAINS[i % 5]}" for i in range(n_customers)],
        dtype=object,
    )
    cust_name = (FIRST[c % 20] + " " + LAST[(c // 20) % 20]).astype(object)
    cust_phone = _codes("07", rng.integers(0, 10**9, n_customers), 9)
    cust_account = _codes("", rng.integers(10**7, 10**8, n_customers), 8)

    cust = rng.integers(0, n_customers, rows)
    booked_s = rng.integers(0, 300 * 86_400, rows)
    amount = np.round(rng.lognormal(3.0, 1.2, rows), 2)

    kinds = rng.choice(5, rows, p=[0.55, 0.15, 0.12, 0.10, 0.08])  # text, mail, card, phone, null
    phrase = PHRASES[rng.integers(0, len(PHRASES), rows)]
    other = cust_email[rng.integers(0, n_customers, rows)]
    card = rng.integers(0, 10_000, (rows, 4))
    notes: list[str | None] = []
    for i in range(rows):
        k = kinds[i]
        if k == 0:
            notes.append(phrase[i])
        elif k == 1:
            notes.append(f"{phrase[i]}; statement copy to {other[i]} as requested")
        elif k == 2:
            a, b, cc, d = card[i]
            notes.append(f"card {a:04d} {b:04d} {cc:04d} {d:04d} reported lost, {phrase[i]}")
        elif k == 3:
            notes.append(f"call back on {cust_phone[cust[i]]} after 5pm")
        else:
            notes.append(None)

    txn_id = _codes("T", np.arange(1, rows + 1), 9)
    amount_text = pa.array(amount).cast(pa.string()).to_numpy(zero_copy_only=False)
    amount_text = amount_text.astype(object)
    currency = CURRENCIES[rng.choice(3, rows, p=[0.8, 0.15, 0.05])]

    per_rule = max(int(rows * bad_fraction) // len(RULES), 1)
    chosen = rng.choice(rows, size=per_rule * len(RULES), replace=False)
    groups = np.split(chosen, len(RULES))
    txn_id[groups[0]] = None
    currency = currency.copy()
    currency[groups[1]] = BAD_CURRENCIES[np.arange(per_rule) % len(BAD_CURRENCIES)]
    amount_text[groups[2]] = BAD_AMOUNTS[np.arange(per_rule) % len(BAD_AMOUNTS)]

    columns = {
        "txn_id": txn_id,
        "customer_id": _codes("C", cust, 7),
        "email": cust_email[cust],
        "phone": cust_phone[cust],
        "account_number": cust_account[cust],
        "full_name": cust_name[cust],
        "note": np.array(notes, dtype=object),
        "amount": amount_text,
        "currency": currency,
        "booked_at": _iso(booked_s),
        "updated_at": _iso(booked_s + rng.integers(0, 86_400, rows)),
        "value_date": np.datetime_as_string(
            np.datetime64("2026-01-01", "D") + (booked_s // 86_400).astype("timedelta64[D]")
        ).astype(object),
        "category": CATEGORIES[rng.integers(0, len(CATEGORIES), rows)],
        "merchant": _codes("M", rng.integers(0, 5_000, rows), 5),
        "channel": CHANNELS[rng.integers(0, len(CHANNELS), rows)],
        "country": COUNTRIES[rng.integers(0, len(COUNTRIES), rows)],
        "mcc": rng.integers(1000, 9999, rows).astype(str).astype(object),
        "is_disputed": np.where(rng.random(rows) < 0.002, "true", "false").astype(object),
        "is_international": np.where(rng.random(rows) < 0.1, "Y", "N").astype(object),
        "balance_after": pa.array(np.round(rng.normal(2_500, 1_500, rows), 2))
        .cast(pa.string())
        .to_numpy(zero_copy_only=False),
        "branch_code": _codes("BR", rng.integers(0, 400, rows), 4),
    }
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(table, path)
    sample = rng.choice(rows, size=min(rows, 2_000), replace=False)
    mail_rows = np.flatnonzero(kinds == 1)[:500]
    addresses = sorted(set(cust_email[cust[sample]]) | set(other[mail_rows]))
    return {
        "planted": {rule: sorted(int(i) for i in g) for rule, g in zip(RULES, groups, strict=True)},
        "sample_addresses": addresses,
        "note_kinds": {
            name: int(np.count_nonzero(kinds == k))
            for k, name in enumerate(["text", "email", "card", "phone", "null"])
        },
    }


def write_spec(path: Path, drop: Path) -> None:
    """The connector as a user declares it: a ConnectorComponent ``defs.yaml``."""
    schema = "\n".join(f"    {name}: {kind}" for name, kind in SCHEMA.items())
    path.write_text(
        f"""# Generated by bench/ingest.py: a bank's CRM transactions export drop folder.
type: aios_dagster.lib.connectors.component.ConnectorComponent
attributes:
  name: {CONNECTOR}
  kind: files
  contract: {DATASET}
  description: CRM transactions export (benchmark).
  source:
    url: "{{{{ sources_dir }}}}/{drop.name}"
    pattern: "*.csv"
    format: csv
    batch_rows: {BATCH_ROWS}
  pii:
    email: {{action: tokenize, as: email_token}}
    phone: {{action: tokenize, as: phone_token}}
    account_number: {{action: tokenize, as: account_token}}
    note: {{action: mask}}
    full_name: {{action: drop}}
  schema:
{schema}
""",
        encoding="utf-8",
    )


def write_contract(path: Path) -> None:
    def rule(kind: str, why: str, **kwargs: Any) -> dict[str, Any]:
        return {"type": f"expect_{kind}", "kwargs": kwargs, "meta": {"why": why}}

    suite = {
        "name": DATASET,
        "meta": {
            "contract": {
                "dataset": DATASET,
                "version": 1,
                "severity": "error",
                "record_id": "txn_id",
                "max_quarantine_fraction": 0.01,
                "owner": "bench@bank",
            }
        },
        "expectations": [
            rule(
                "table_columns_to_match_set",
                "what staging reads",
                column_set=list(SCHEMA),
                exact_match=True,
            ),
            rule("column_values_to_not_be_null", "dedup key", column="txn_id"),
            rule("column_values_to_be_unique", "booked once", column="txn_id"),
            rule("column_values_to_not_be_null", "joins by customer", column="customer_id"),
            rule("column_values_to_not_be_null", "spend features", column="amount"),
            rule("column_values_to_not_be_null", "history windows", column="booked_at"),
            rule(
                "column_values_to_be_in_set",
                "currencies the bank books",
                column="currency",
                value_set=["GBP", "EUR", "USD"],
            ),
            rule(
                "column_values_to_be_in_set",
                "known channels",
                column="channel",
                value_set=list(dict.fromkeys(CHANNELS)),
            ),
        ],
    }
    path.write_text(json.dumps(suite, indent=2) + "\n", encoding="utf-8")
