"""Online features: what ``email_features`` (dbt) computes for an email, computed in the handler.

The batch path joins each email with its sender's CRM record and transaction history *as of the
email's time*. The handler cannot wait for a dbt build, so the ``customer_online_features``
asset copies each customer's record and recent transactions into the online store after the
warehouse is built, and the handler evaluates the same windows over them when the mail
arrives. Text features are computed from the landed (masked) subject and body exactly as
``email_text_features`` does. ``test_online_features`` holds both to the feature table, value by
value, for the same emails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from aios_dagster.lib.features.text import hash_text, vectors_to_arrow
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.realtime.online_store import KeyValueStore
from aios_dagster.lib.warehouse import WarehouseResource

CUSTOMERS = "customers"  # online-store namespace: one document per sender token
_CENT = Decimal("0.01")
_US = 1_000_000


@dataclass(frozen=True)
class Windows:
    """The feature windows of ``dbt_project.yml`` (``recent_days``, ``dispute_days``)."""

    recent_days: int = 30
    dispute_days: int = 90

    @classmethod
    def from_dbt_project(cls, project_dir: Path) -> Windows:
        config = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
        found = config.get("vars") or {}
        return cls(int(found["recent_days"]), int(found["dispute_days"]))


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * _US)


def refresh_customers(
    warehouse: WarehouseResource, store: KeyValueStore, windows: Windows, *, slack_days: int = 30
) -> dict[str, int]:
    """Copy every customer and their transactions of the last window into the online store.

    "Last" is relative to the newest transaction in the warehouse, less ``slack_days`` more, so
    mail received up to that long before it is still served exactly. The namespace is replaced
    as a whole: a customer deleted from the CRM disappears.
    """
    newest = warehouse.query_arrow("select max(booked_at) as newest from stg_transactions")
    latest = newest.column(0)[0].as_py() or datetime.now(UTC)
    since = latest - timedelta(days=windows.dispute_days + slack_days)
    rows = warehouse.query_arrow(
        "select c.email_token, c.customer_id, c.segment, c.joined_on, t.booked_at, t.amount, "
        "t.currency, t.is_disputed, t.updated_at "
        "from stg_customers as c left join stg_transactions as t "
        "on t.customer_id = c.customer_id and t.booked_at >= ? "
        "where c.email_token is not null order by c.email_token, t.booked_at",
        [since],
    ).to_pylist()
    docs: dict[str, dict[str, Any]] = {}
    transactions = 0
    for row in rows:
        doc = docs.setdefault(
            row["email_token"],
            {
                "customer_id": row["customer_id"],
                "segment": row["segment"],
                "joined_on": row["joined_on"].isoformat() if row["joined_on"] else None,
                "txns": [],
            },
        )
        if row["booked_at"] is not None:
            transactions += 1
            doc["txns"].append(
                [
                    _micros(row["booked_at"]),
                    row["amount"],
                    row["currency"],
                    row["is_disputed"],
                    _micros(row["updated_at"]),
                ]
            )
    store.replace_all(CUSTOMERS, docs)
    return {"customers": len(docs), "transactions": transactions, "since": _micros(since) or 0}


def _history(doc: dict[str, Any] | None, received: int, windows: Windows) -> dict[str, float]:
    """``txn_history`` of email_features.sql for one email (zeros without a customer)."""
    out = {
        "txn_count_30d": 0.0,
        "spend_30d": 0.0,
        "max_debit_30d": 0.0,
        "foreign_txn_30d": 0.0,
        "disputes_90d": 0.0,
    }
    if doc is None:
        return out
    recent = received - windows.recent_days * 86_400 * _US
    reach = received - windows.dispute_days * 86_400 * _US
    spend = Decimal(0)
    max_debit: float | None = None
    for booked, amount, currency, disputed, updated in doc["txns"]:
        if not reach <= booked < received:
            continue
        if disputed and updated is not None and updated <= received:
            out["disputes_90d"] += 1
        if booked < recent:
            continue
        out["txn_count_30d"] += 1
        if currency is not None and currency != "GBP":
            out["foreign_txn_30d"] += 1
        if amount is not None and amount < 0:
            spend += Decimal(repr(-amount)).quantize(_CENT, ROUND_HALF_UP)
            max_debit = -amount if max_debit is None else max(max_debit, -amount)
    out["spend_30d"] = float(spend)
    out["max_debit_30d"] = float(max_debit or 0.0)
    return out


def email_features(
    spec: ModelSpec, landed: pa.Table, store: KeyValueStore, windows: Windows
) -> pa.Table:
    """The feature rows of ``landed`` (rows of ``raw_emails``) as ``email_features`` has them:
    the id and time columns, then ``spec``'s numeric and vector features."""
    received = pc.cast(landed.column("received_at"), pa.timestamp("us", tz="UTC")).to_pylist()
    tokens = landed.column("sender_token").to_pylist()
    docs = store.get_many(CUSTOMERS, [t for t in tokens if t is not None])
    subjects = landed.column("subject").to_pylist()
    bodies = landed.column("body").to_pylist()
    attachments = landed.column("attachment_names").to_pylist()
    replies = landed.column("in_reply_to").to_pylist()
    rows: list[dict[str, Any]] = []
    for i, when in enumerate(received):
        doc = docs.get(tokens[i]) if tokens[i] is not None else None
        segment = doc["segment"] if doc else None
        joined = doc.get("joined_on") if doc else None
        tenure = 0.0
        if joined is not None:
            days = (when.astimezone(UTC).date() - datetime.fromisoformat(joined).date()).days
            tenure = days / 365.25
        rows.append(
            {
                "segment_premier": float(segment == "premier"),
                "segment_business": float(segment == "business"),
                "tenure_years": tenure,
                **_history(doc, _micros(when) or 0, windows),
                "subject_chars": float(len(subjects[i] or "")),
                "body_chars": float(len(bodies[i] or "")),
                "n_attachments": float(len(attachments[i] or [])),
                "is_reply": float(replies[i] is not None),
                "hour_of_day": float(when.astimezone(UTC).hour),
            }
        )
    text = [f"{s or ''}\n{b or ''}" for s, b in zip(subjects, bodies, strict=True)]
    vectors = hash_text(pd.Series(text, dtype=object))
    columns: dict[str, Any] = {
        spec.id_column: landed.column("email_id"),
        spec.time_column: pa.array(received, pa.timestamp("us", tz="UTC")),
    }
    for name in spec.numeric_features:
        columns[name] = pa.array(np.array([r[name] for r in rows], dtype=np.float64))
    unknown = [n for n in spec.numeric_features if n not in rows[0]] if rows else []
    unknown += [n for n in spec.vector_features if n != "text_vec"]
    if unknown:
        raise ValueError(
            f"model {spec.name}: the online path cannot compute {unknown}; it computes the "
            f"features of email_features.sql ({sorted(rows[0])} and text_vec)"
        )
    for name in spec.numeric_features:
        columns[name] = pa.array(np.array([r[name] for r in rows], dtype=np.float64))
    for name in spec.vector_features:
        columns[name] = vectors_to_arrow(vectors)
    return pa.table(columns)
