"""Triton's health as Dagster shows it: a sensor that probes the server, and a check per model.

A dead or restarting Triton used to be invisible in the UI: runs failed one by one and nothing
said why. ``triton_health_sensor`` probes the configured replicas every tick and says in its
tick (skip reason and log) whether Triton is up and which models it serves; when a model's
serving state changes it also records an evaluation of that model's ``served_by_triton``
check, so the published model asset turns red in the asset graph while its model cannot be
served, and green again when it can. The same check can be run by hand from the asset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from aios_dagster.lib.serving.triton import TritonResource

CHECK_NAME = "served_by_triton"
SENSOR_NAME = "triton_health_sensor"


@dataclass(frozen=True)
class TritonHealth:
    """What one probe saw: per replica "ready" or why not; per model its state on the server."""

    replicas: dict[str, str]
    models: dict[str, str] = field(default_factory=dict)  # model -> "READY" or state: reason

    @property
    def up(self) -> bool:
        return any(answer == "ready" for answer in self.replicas.values())

    def model_ready(self, model: str) -> bool:
        return self.models.get(model) == "READY"

    def model_state(self, model: str) -> str:
        if not self.up:
            return "Triton is down"
        return self.models.get(model, "not in the model repository")

    def summary(self) -> str:
        urls = ", ".join(self.replicas)
        if not self.up:
            why = "; ".join(f"{url}: {answer}" for url, answer in self.replicas.items())
            return f"Triton DOWN at {urls}: {why}"
        ready = sorted(m for m in self.models if self.model_ready(m))
        other = {m: s for m, s in sorted(self.models.items()) if s != "READY"}
        text = f"Triton ready at {urls}; models ready: {', '.join(ready) or 'none'}"
        if other:
            text += "; not ready: " + "; ".join(f"{m} ({s})" for m, s in other.items())
        return text


def _model_states(url: str, timeout_s: float) -> dict[str, str]:
    """Model name -> "READY" or "<state>: <reason>", from the server's repository index.

    A model with several versions is READY when any version is: the newest ready version is
    what an unpinned request gets.
    """
    with grpcclient.InferenceServerClient(url=url) as client:
        index = client.get_model_repository_index(as_json=True, client_timeout=timeout_s)
    states: dict[str, str] = {}
    for entry in index.get("models", []):
        name = str(entry.get("name", ""))
        state = str(entry.get("state") or "UNKNOWN")
        if state == "READY" or states.get(name) == "READY":
            states[name] = "READY"
        else:
            reason = str(entry.get("reason") or "").strip()
            states[name] = f"{state}: {reason}" if reason else state
    return states


def probe_triton(triton: TritonResource, timeout_s: float = 5.0) -> TritonHealth:
    """One look at Triton: never raises for a server that is down, it reports it."""
    try:
        replicas = triton.wait_until_ready(timeout_s=timeout_s)
    except TimeoutError as exc:
        return TritonHealth(replicas={url: str(exc) for url in triton.replica_urls()})
    ready = next(url for url, answer in replicas.items() if answer == "ready")
    try:
        models = _model_states(ready, timeout_s)
    except InferenceServerException as exc:  # went away between the two calls
        return TritonHealth(replicas={**replicas, ready: f"model index failed: {exc}"})
    return TritonHealth(replicas=replicas, models=models)


def _verdict(model: str, health: TritonHealth) -> dict[str, Any]:
    """The fields a ``served_by_triton`` result or evaluation shares."""
    passed = health.up and health.model_ready(model)
    return {
        "check_name": CHECK_NAME,
        "passed": passed,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": (
            f"Triton model {model!r} is ready"
            if passed
            else f"Triton model {model!r} cannot be served: {health.model_state(model)}"
        ),
        "metadata": {
            "triton_model": model,
            "state": health.model_state(model),
            "replicas": json.dumps(health.replicas, sort_keys=True),
        },
    }


def build_served_by_triton_check(
    asset_key: dg.AssetKey, triton_model: str, timeout_s: float = 5.0
) -> dg.AssetChecksDefinition:
    """``served_by_triton`` on a published model asset: is that model ready on Triton now."""

    @dg.asset_check(
        asset=asset_key,
        name=CHECK_NAME,
        description=f"Triton serves model {triton_model!r} (evaluated by {SENSOR_NAME} whenever "
        "its state changes, or on demand).",
    )
    def _check(triton: TritonResource) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key, **_verdict(triton_model, probe_triton(triton, timeout_s))
        )

    return _check


def build_triton_health_sensor(
    models: Mapping[str, dg.AssetKey] | None = None,
    *,
    name: str = SENSOR_NAME,
    minimum_interval_seconds: int = 30,
    timeout_s: float = 5.0,
) -> dg.SensorDefinition:
    """A sensor that reports Triton's health on every tick and never launches runs.

    ``models`` maps a Triton model name to its published asset; for those, an evaluation of
    the ``served_by_triton`` check (``build_served_by_triton_check``) is recorded whenever the
    model's serving state changes (the cursor remembers the last one), so the event log gets
    one entry per outage rather than one per tick.
    """
    watched = dict(models or {})

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Probes Triton each tick: the tick says whether it is up and which models "
        "it serves; the published model assets' served_by_triton checks follow it.",
    )
    def _sensor(context: dg.SensorEvaluationContext, triton: TritonResource) -> dg.SensorResult:
        health = probe_triton(triton, timeout_s)
        summary = health.summary()
        if health.up:
            context.log.info(summary)
        else:
            context.log.warning(summary)
        previous = json.loads(context.cursor) if context.cursor else {}
        current = {m: health.up and health.model_ready(m) for m in watched}
        events = [
            dg.AssetCheckEvaluation(asset_key=key, **_verdict(m, health))
            for m, key in watched.items()
            if previous.get(m) != current[m]
        ]
        return dg.SensorResult(
            skip_reason=summary,
            cursor=json.dumps(current, sort_keys=True),
            asset_events=events,
        )

    return _sensor
