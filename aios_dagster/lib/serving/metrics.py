"""Triton's own Prometheus metrics, read around a batch so a run reports server-side time.

Client-side latency says how long a request took end to end; the server's queue and compute
counters say where that time went (waiting for an instance vs running the model), which is
what decides whether to add instances, replicas or batch size.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<name>nv_inference_\w+)\{(?P<labels>[^}]*)\}\s+(?P<value>[-0-9.eE+]+)$")
_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
)


@dataclass(frozen=True)
class ServerCounters:
    values: dict[str, float]

    def minus(self, earlier: ServerCounters) -> dict[str, float]:
        return {k: v - earlier.values.get(k, 0.0) for k, v in self.values.items()}


def parse_counters(text: str, model: str) -> ServerCounters:
    """Sum each counter over the versions of ``model`` in a Prometheus text exposition."""
    values = dict.fromkeys(_COUNTERS, 0.0)
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m and m["name"] in values and f'model="{model}"' in m["labels"]:
            values[m["name"]] += float(m["value"])
    return ServerCounters(values)


def read_counters(metrics_url: str, model: str, timeout_s: float = 2.0) -> ServerCounters:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{metrics_url}/metrics", timeout=timeout_s) as response:
        return parse_counters(response.read().decode(), model)


def summarize(delta: dict[str, float]) -> dict[str, float]:
    """Per-execution server time from counter deltas (what the asset metadata shows)."""
    execs = max(delta.get("nv_inference_exec_count", 0.0), 1.0)
    return {
        "triton_requests_ok": delta.get("nv_inference_request_success", 0.0),
        "triton_requests_failed": delta.get("nv_inference_request_failure", 0.0),
        "triton_executions": delta.get("nv_inference_exec_count", 0.0),
        "triton_queue_ms_per_exec": round(
            delta.get("nv_inference_queue_duration_us", 0.0) / execs / 1000, 3
        ),
        "triton_compute_ms_per_exec": round(
            delta.get("nv_inference_compute_infer_duration_us", 0.0) / execs / 1000, 3
        ),
    }
