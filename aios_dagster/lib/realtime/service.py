"""A handler wired to the project: its model, connector, lake, stores, Triton and source.

``aios-dagster serve`` and the tests build a handler from ``Settings`` here, so both run the same
wiring. The handler's figures go to the online store (what its lag check reads) and, when a
Dagster instance is given, as observations of the model's predictions asset: the asset graph
shows decisions made outside any run, with throughput, lag and latency.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.pii_policy import TokenCache
from aios_dagster.lib.contracts.runner import load_contract
from aios_dagster.lib.inference.catalog import ModelSpec, load_catalog
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.checks import HANDLERS
from aios_dagster.lib.realtime.component import connector_of, handler_specs
from aios_dagster.lib.realtime.events import EventSource
from aios_dagster.lib.realtime.folder_source import FolderEventSource
from aios_dagster.lib.realtime.handler_spec import FolderSource, HandlerSpec, KafkaSource
from aios_dagster.lib.realtime.kafka_source import KafkaEventSource
from aios_dagster.lib.realtime.nats_events import NatsEventsConfig, NatsEventSource
from aios_dagster.lib.realtime.online_features import Windows
from aios_dagster.lib.realtime.online_store import KeyValueStore, open_store
from aios_dagster.lib.realtime.runtime import HandlerRuntime, RuntimeStats
from aios_dagster.lib.realtime.sinks import Sinks
from aios_dagster.lib.realtime.steps import HandlerContext
from aios_dagster.resources import EMBEDDED_PII_KEY, require_pii_key, triton_resource
from aios_dagster.settings import Settings


def find_handler(settings: Settings, name: str | None) -> HandlerSpec:
    specs = handler_specs(settings)
    if name is None:
        if len(specs) != 1:
            raise ValueError(f"name the handler to serve: one of {sorted(specs)}")
        return next(iter(specs.values()))
    if name not in specs:
        raise ValueError(f"no enabled handler {name!r} (declared: {sorted(specs)})")
    return specs[name]


def build_source(spec: HandlerSpec, settings: Settings) -> EventSource:
    source = spec.source_config()
    if isinstance(source, KafkaSource):
        return KafkaEventSource(source)
    if isinstance(source, NatsEventsConfig):
        return NatsEventSource(source)
    assert isinstance(source, FolderSource)
    return FolderEventSource(source, CursorStore(root=str(settings.cursors_dir)), spec.name)


def build_context(
    spec: HandlerSpec, settings: Settings, *, store: KeyValueStore, triton_retry_s: float
) -> HandlerContext:
    require_pii_key(settings)
    models = load_catalog(settings.models_dir)
    if spec.model not in models:
        raise ValueError(
            f"{spec.path}: model: no model {spec.model!r} (declared: {sorted(models)})"
        )
    connector = connector_of(spec, settings)
    contract = load_contract(settings.expectations_dir / f"{connector.contract}.json")
    # Short retries: a handler that cannot reach Triton pauses consumption (backpressure)
    # instead of holding one call for the batch path's minute.
    triton = triton_resource(replace(settings, triton_retry_total_s=triton_retry_s))
    return HandlerContext(
        name=spec.name,
        model=models[spec.model],
        connector=connector,
        contract=contract,
        lake=LakeResource(root=str(settings.lake_dir)),
        tokens=TokenCache(PiiMasker(hmac_key=settings.pii_key or EMBEDDED_PII_KEY)),
        store=store,
        windows=Windows.from_dbt_project(settings.dbt_project_dir),
        triton=triton,
        run_id=f"realtime:{spec.name}",
        repeat_sender=spec.repeat_sender,
        sinks=_sinks(spec, models[spec.model]),
    )


def _sinks(spec: HandlerSpec, model: ModelSpec) -> Sinks | None:
    config = spec.sinks_config()
    if not (config.topics or config.rpa):
        return None
    return Sinks(config, [h.name for h in model.heads])


def reporter(spec: HandlerSpec, store: KeyValueStore, instance: Any | None) -> Any:
    """The runtime's ``on_report``: the store (for the lag check) and Dagster's event log."""

    def report(stats: RuntimeStats) -> None:
        figures = {**stats.snapshot(), "reported_at": time.time()}
        store.put_many(HANDLERS, {spec.name: figures})
        if instance is None:
            return
        import dagster as dg

        metadata = {k: v for k, v in figures.items() if v is not None}
        metadata["handler"] = spec.name
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey(spec.name),
                description=f"decisions of handler {spec.name} into {spec.model}_predictions",
                metadata=metadata,
            )
        )

    return report


def build_runtime(
    settings: Settings,
    name: str | None = None,
    *,
    instance: Any | None = None,
    triton_retry_s: float = 5.0,
) -> HandlerRuntime:
    """The handler ``name`` (the only one, if None) ready to ``run``."""
    spec = find_handler(settings, name)
    store = open_store(settings.online_store)
    ctx = build_context(spec, settings, store=store, triton_retry_s=triton_retry_s)
    return HandlerRuntime(
        spec, ctx, build_source(spec, settings), on_report=reporter(spec, store, instance)
    )
