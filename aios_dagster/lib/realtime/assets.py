"""The batch side of the online store: customers and their recent transactions for the handler."""

from __future__ import annotations

import dagster as dg

from aios_dagster.lib.realtime.online_features import Windows, refresh_customers
from aios_dagster.lib.realtime.online_store import OnlineStoreResource
from aios_dagster.lib.warehouse import WarehouseResource
from aios_dagster.settings import current_settings


@dg.asset(
    group_name="features",
    deps=[dg.AssetKey("stg_customers"), dg.AssetKey("stg_transactions")],
    kinds={"python"},
    description="Each customer's CRM record and recent transactions, copied from the warehouse "
    "into the online store (Redis in production) so the real-time handler computes the same "
    "features as email_features for mail that has not reached the warehouse yet.",
)
def customer_online_features(
    warehouse: WarehouseResource, online_store: OnlineStoreResource
) -> dg.MaterializeResult:
    windows = Windows.from_dbt_project(current_settings().dbt_project_dir)
    store = online_store.open()
    try:
        figures = refresh_customers(warehouse, store, windows)
    finally:
        store.close()
    return dg.MaterializeResult(
        metadata={
            "customers": figures["customers"],
            "transactions": figures["transactions"],
            "store": online_store.url.split("@")[-1],  # never a password in metadata
        }
    )
