"""Shared helper for daily-partitioned assets that process a range of days in one run."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg


def days_in(window: dg.TimeWindow) -> list[date]:
    """Each day of a (single-run backfill) time window, oldest first, end exclusive."""
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]
