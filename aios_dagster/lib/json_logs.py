"""Structured JSON log lines for a log pipeline (Loki, Elasticsearch, Cloud Logging).

Configured in the instance's ``dagster.yaml`` (``python_logs.dagster_handler_config``, see
``deploy/dagster.yaml``), so every run's events and ``context.log`` lines, in whatever process
the run executes, come out one JSON object per line with the run id, job, step and asset key as
fields a log query can filter on. The message is Dagster's own: it is already masked at the edge
(connectors tokenise before anything is logged), and no resource config is ever logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

_FIELDS = {
    "run_id": "run_id",
    "job_name": "job",
    "step_key": "step",
    "orig_message": None,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and Dagster's context."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
        }
        meta = getattr(record, "dagster_meta", None) or {}
        out["message"] = str(meta.get("orig_message") or record.getMessage())
        for key, name in _FIELDS.items():
            if name and meta.get(key):
                out[name] = str(meta[key])
        event = meta.get("dagster_event")
        if event is not None:
            out["event"] = event.event_type_value
            asset = getattr(event, "asset_key", None)
            if asset is not None:
                out["asset_key"] = asset.to_user_string()
            partition = getattr(event, "partition", None)
            if partition:
                out["partition"] = partition
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
