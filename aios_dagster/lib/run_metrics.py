"""Prometheus metrics of the pipeline's runs, read from the Dagster instance when scraped.

Every figure a run reports is already asset metadata in the event log (rows landed, records
quarantined, Triton requests, retries, failovers, latency percentiles, emails sent to review,
drift share). Steps run in short-lived run workers (a pod per run on Kubernetes), so nothing in
them lives long enough to be scraped; instead this exporter, one long-running process beside
the daemon, turns the newest materialization of each asset into gauges at scrape time, and
counts runs by job and status. No pushgateway, and the event log stays the single source.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Materialization metadata key -> (metric name, help). Only these leave the instance: numbers
# an operator alerts on, never free text (which could carry a record's content).
FIELDS: dict[str, tuple[str, str]] = {
    "dagster/row_count": ("aios_asset_rows", "Rows the newest materialization wrote."),
    "rows_in": ("aios_connector_rows_in", "Records a connector run read."),
    "records_quarantined": (
        "aios_connector_records_quarantined",
        "Records the newest connector run sent to quarantine.",
    ),
    "requests": ("aios_triton_requests", "Triton requests of the newest run of the asset."),
    "retries": ("aios_triton_retries", "Triton retries of the newest run of the asset."),
    "failovers": ("aios_triton_failovers", "Requests that failed over to another replica."),
    "needs_review": ("aios_decisions_needs_review", "Decisions sent to human review."),
    "drift_share": ("aios_drift_share", "Share of drifted columns in the newest window."),
}
LATENCY = {"latency_ms_p50": "0.5", "latency_ms_p95": "0.95", "latency_ms_p99": "0.99"}


class RunMetricsCollector:
    """A ``prometheus_client`` collector over a Dagster instance (read on every scrape)."""

    def __init__(self, instance: Any, asset_keys: list[Any] | None = None) -> None:
        self.instance = instance
        self.asset_keys = asset_keys

    def _keys(self) -> list[Any]:
        if self.asset_keys is not None:
            return self.asset_keys
        return list(self.instance.get_asset_keys())

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauges = {
            field: GaugeMetricFamily(name, text, labels=["asset"])
            for field, (name, text) in FIELDS.items()
        }
        latency = GaugeMetricFamily(
            "aios_triton_latency_ms",
            "Per-request Triton latency of the newest run, by quantile.",
            labels=["asset", "quantile"],
        )
        when = GaugeMetricFamily(
            "aios_asset_last_materialization_timestamp_seconds",
            "When the asset was last materialised (for freshness alerts).",
            labels=["asset"],
        )
        for key in self._keys():
            page = self.instance.fetch_materializations(key, limit=1)
            if not page.records:
                continue
            record = page.records[0]
            asset = key.to_user_string()
            when.add_metric([asset], record.timestamp)
            metadata = record.asset_materialization.metadata
            for field, gauge in gauges.items():
                value = _number(metadata.get(field))
                if value is not None:
                    gauge.add_metric([asset], value)
            for field, quantile in LATENCY.items():
                value = _number(metadata.get(field))
                if value is not None:
                    latency.add_metric([asset, quantile], value)
        yield from gauges.values()
        yield latency
        yield when
        yield self._runs()

    def _runs(self) -> Any:
        from dagster import RunsFilter
        from prometheus_client.core import GaugeMetricFamily

        runs = GaugeMetricFamily(
            "aios_runs", "Runs in the instance, by job and status.", labels=["job", "status"]
        )
        counts: dict[tuple[str, str], int] = {}
        for run in self.instance.get_runs(filters=RunsFilter(), limit=10_000):
            key = (run.job_name, run.status.value)
            counts[key] = counts.get(key, 0) + 1
        for (job, status), count in sorted(counts.items()):
            runs.add_metric([job, status], count)
        return runs


def _number(value: Any) -> float | None:
    raw = getattr(value, "value", value)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


def serve(instance: Any, host: str, port: int) -> Any:
    """Serve ``/metrics`` for ``instance`` on ``host:port`` in a background thread."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(RunMetricsCollector(instance))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread
