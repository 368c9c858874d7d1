"""Connector assets of the support-triage workflow: source systems -> masked, contracted lake.

Each asset reads one source, masks or tokenises PII before anything is written, and lands the
batch under its data contract (good rows to ``raw_<dataset>``, bad rows to quarantine).
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.connectors.lake import LakeResource
from aios_dagster.lib.connectors.mailbox import list_mailbox, read_mailbox
from aios_dagster.lib.connectors.pii import PiiMasker, mask_names, mask_series
from aios_dagster.lib.connectors.sources import SourceSystems
from aios_dagster.lib.connectors.tabular import read_csv_as_strings, read_sqlite_table
from aios_dagster.lib.contracts.landing import land_with_contract
from aios_dagster.lib.contracts.store import ContractStore

EMAILS_SCHEMA = pa.schema(
    [
        ("email_id", pa.string()),
        ("message_id", pa.string()),
        ("in_reply_to", pa.string()),
        ("thread_id", pa.string()),
        ("sender_token", pa.string()),
        ("subject", pa.string()),
        ("body", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("attachment_names", pa.list_(pa.string())),
        ("has_html", pa.bool_()),
        ("source_file", pa.string()),
        ("parse_error", pa.string()),
    ]
)
CUSTOMERS_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("customer_id", "email_token", "phone_token", "account_token")]
    + [("segment", pa.string()), ("joined_on", pa.string()), ("city", pa.string())]
)
TRANSACTIONS_SCHEMA = pa.schema(
    [
        ("txn_id", pa.string()),
        ("customer_id", pa.string()),
        ("account_token", pa.string()),
        ("booked_at", pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("merchant", pa.string()),
        ("channel", pa.string()),
        ("is_disputed", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
LABELS_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("email_id", "queue", "priority")]
    + [("labelled_at", pa.timestamp("us", tz="UTC"))]
)


def _land(
    lake: LakeResource,
    contracts: ContractStore,
    dataset: str,
    frame: pd.DataFrame,
    *,
    source: str,
    schema: pa.Schema,
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    """Land a batch under its dataset's contract and report what went where."""
    landing = land_with_contract(
        lake, dataset, frame, contracts.load(dataset), source=source, schema=schema
    )
    return dg.MaterializeResult(
        metadata={**landing.metadata(), **(extra or {}), "dagster/row_count": len(frame)}
    )


@dg.asset(
    group_name="ingest",
    kinds={"email", "parquet"},
    owners=["team:data-platform"],
    description="Support mailbox (.eml) parsed, PII masked, landed under the emails contract.",
)
def raw_emails(
    sources: SourceSystems,
    lake: LakeResource,
    pii: PiiMasker,
    contracts: ContractStore,
) -> dg.MaterializeResult:
    frame = read_mailbox(list_mailbox(sources.mailbox))
    frame["sender_token"] = pii.tokenize_series(frame["sender_address"])
    frame["subject"], subject_stats = mask_series(frame["subject"])
    frame["body"], body_stats = mask_series(frame["body"])
    frame["subject"], subject_names = mask_names(frame["subject"], frame["sender_name"])
    frame["body"], body_names = mask_names(frame["body"], frame["sender_name"])
    frame = frame.drop(columns=["sender_address", "sender_name"])[EMAILS_SCHEMA.names]
    masked = {k: subject_stats.counts[k] + body_stats.counts[k] for k in body_stats.counts}
    masked["NAME"] = subject_names + body_names
    return _land(
        lake,
        contracts,
        "emails",
        frame,
        source=str(sources.mailbox),
        schema=EMAILS_SCHEMA,
        extra={"pii_masked": masked},
    )


@dg.asset(
    group_name="ingest",
    kinds={"csv", "parquet"},
    owners=["team:data-platform"],
    description="CRM customer export; e-mail, phone and account number tokenised, name dropped.",
)
def raw_customers(
    sources: SourceSystems, lake: LakeResource, pii: PiiMasker, contracts: ContractStore
) -> dg.MaterializeResult:
    frame = read_csv_as_strings(Path(sources.crm_csv))
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "email_token": pii.tokenize_series(frame["email"]),
            "phone_token": pii.tokenize_series(frame["phone"]),
            "account_token": pii.tokenize_series(frame["account_number"]),
            "segment": frame["segment"],
            "joined_on": frame["joined_on"],
            "city": frame["city"],
        }
    )
    return _land(lake, contracts, "customers", out, source=sources.crm_csv, schema=CUSTOMERS_SCHEMA)


@dg.asset(
    group_name="ingest",
    kinds={"sqlite", "parquet"},
    owners=["team:data-platform"],
    description="Core-banking transactions (SQL); account numbers tokenised.",
)
def raw_transactions(
    sources: SourceSystems, lake: LakeResource, pii: PiiMasker, contracts: ContractStore
) -> dg.MaterializeResult:
    frame = read_sqlite_table(
        Path(sources.transactions_db),
        "select txn_id, customer_id, account_number, booked_at, amount, currency, merchant,"
        " channel, is_disputed, updated_at from transactions order by txn_id",
    )
    frame["account_token"] = pii.tokenize_series(frame["account_number"])
    frame = frame.drop(columns=["account_number"])
    for col in ("booked_at", "updated_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    frame["is_disputed"] = frame["is_disputed"].astype("boolean")
    frame = frame[TRANSACTIONS_SCHEMA.names]
    return _land(
        lake,
        contracts,
        "transactions",
        frame,
        source=f"{sources.transactions_db}:transactions",
        schema=TRANSACTIONS_SCHEMA,
    )


@dg.asset(
    group_name="ingest",
    kinds={"csv", "parquet"},
    owners=["team:support-ops"],
    description="Historical routing decisions by human agents: the supervised labels.",
)
def raw_routing_labels(
    sources: SourceSystems, lake: LakeResource, contracts: ContractStore
) -> dg.MaterializeResult:
    frame = read_csv_as_strings(Path(sources.labels_csv))
    frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, format="ISO8601")
    frame = frame[LABELS_SCHEMA.names]
    return _land(
        lake, contracts, "routing_labels", frame, source=sources.labels_csv, schema=LABELS_SCHEMA
    )


CONNECTOR_ASSETS = [raw_emails, raw_customers, raw_transactions, raw_routing_labels]
CONTRACTED_DATASETS = {
    raw_emails.key: "emails",
    raw_customers.key: "customers",
    raw_transactions.key: "transactions",
    raw_routing_labels.key: "routing_labels",
}
