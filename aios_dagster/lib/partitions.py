"""Shared helper for daily-partitioned assets that process a range of days in one run."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg


def days_in(window: dg.TimeWindow) -> list[date]:
    """Each day of a (single-run backfill) time window, oldest first, end exclusive."""
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def partition_days(context: dg.AssetExecutionContext, name: str) -> list[tuple[str, date]]:
    """(partition key, day) for each day the run covers, oldest first.

    A run launched without a partition (or range) can never succeed, so it fails at once with a
    ``Failure`` that is not retried, rather than Dagster's internal check error after retries.
    """
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(
            description=f"{name} is partitioned by day: launch it "
            "for a partition or a range of partitions (e.g. a backfill), not without one",
            allow_retries=False,
        )
    days = days_in(context.partition_time_window)
    return list(zip(context.partition_keys, days, strict=True))
