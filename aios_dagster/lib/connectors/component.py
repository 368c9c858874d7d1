"""The connector Component: one ``defs.yaml`` per source under ``defs/ingest/<name>/``.

A data engineer adds a source by writing YAML that names the kind, the source, the trigger, the
PII policy and the landed schema; ``dg list defs`` then shows its asset, contract check, job and
sensor or schedule. Paths and secrets use the Components' own templating, resolved when the code
location loads::

    type: aios_dagster.lib.connectors.component.ConnectorComponent
    attributes:
      name: raw_transactions
      kind: sql
      source:
        dsn: "{{ env('AIOS_BANK_DSN', 'sqlite:///' ~ sources_dir ~ '/bank.sqlite') }}"

``sources_dir``, ``data_dir``, ``lake_dir`` and ``project_dir`` come from ``Settings`` (see
``get_additional_scope``); ``env`` is Dagster's own scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import dagster as dg
import yaml
from pydantic import BaseModel, ValidationError

from aios_dagster.lib.connectors.definitions import (
    build_connector_asset,
    build_connector_sensor,
    build_contract_check,
    ingest_job_name,
)
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.settings import Settings, current_settings

T = TypeVar("T")


def settings_scope(settings: Settings) -> dict[str, str]:
    """The template variables every Component YAML of this project may use for paths."""
    return {
        "data_dir": str(settings.data_dir),
        "sources_dir": str(settings.sources_dir),
        "lake_dir": str(settings.lake_dir),
        "project_dir": str(settings.project_dir),
    }


class ConnectorComponent(ConnectorSpec, dg.Component, dg.Resolvable):
    """One declared source: an asset landing it under its contract, the blocking contract check,
    and the trigger (a sensor or schedule running the job it names, or ``ingest_<name>_job``)."""

    @classmethod
    def get_additional_scope(cls) -> Mapping[str, Any]:
        # Called when the defs folder loads (never at import): settings come from the
        # environment the code location runs in.
        return settings_scope(current_settings())

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        return load_naming_file(super().load, attributes, context, "connector")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        data = {**self.model_dump(by_alias=True), "path": str(context.path / "defs.yaml")}
        spec = ConnectorSpec.model_validate(data)
        if not spec.enabled:
            # An optional system (helpdesk API, card-event bus) not configured here.
            return dg.Definitions()
        return connector_definitions(spec)


def connector_definitions(spec: ConnectorSpec) -> dg.Definitions:
    """Asset, check, own job and trigger of one connector (jobs named, never passed around)."""
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    jobs = []
    own_name = ingest_job_name(spec.name)
    trigger = spec.trigger
    needs_own_job = trigger.schedule is not None or (
        trigger.sensor is not None and trigger.sensor.job is None
    )
    if needs_own_job:
        jobs.append(
            dg.define_asset_job(
                own_name,
                selection=dg.AssetSelection.assets(spec.name),
                tags={"aios/connector": spec.name, **k8s_job_tags(own_name)},
                description=f"Land new records of connector {spec.name}.",
            )
        )
    if trigger.sensor is not None:
        sensors.append(build_connector_sensor(spec, trigger.sensor.job or own_name))
    if trigger.schedule is not None:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{spec.name}_schedule",
                job_name=own_name,
                cron_schedule=trigger.schedule.cron,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description=f"Pull new records of {spec.name} on a schedule.",
            )
        )
    return dg.Definitions(
        assets=[build_connector_asset(spec)],
        asset_checks=[build_contract_check(spec)],
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
    )


CONNECTOR_COMPONENT = f"{ConnectorComponent.__module__}.{ConnectorComponent.__qualname__}"


def load_connector(path: Path, scope: Mapping[str, str]) -> ConnectorSpec:
    """One connector's ``defs.yaml``, templated as Dagster would, for code outside a Dagster
    load (the quarantine CLI, benchmarks, tests). ``scope`` holds the template variables
    (``settings_scope``). Errors name the file and the field."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("type") != CONNECTOR_COMPONENT:
        raise ValueError(f"{path}: not a {CONNECTOR_COMPONENT} declaration")
    try:
        model = ConnectorComponent.model().model_validate(doc.get("attributes") or {})
        context = dg.ResolutionContext.default().with_scope(**scope)
        component = ConnectorComponent.resolve_from_model(context, model)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid connector: {describe_errors(exc)}") from exc
    return ConnectorSpec.model_validate({**component.model_dump(by_alias=True), "path": str(path)})


def connector_specs(settings: Settings) -> list[ConnectorSpec]:
    """Every connector declared under ``Settings.connectors_dir`` whose system is configured."""
    paths = sorted(settings.connectors_dir.glob("*/defs.yaml"))
    specs = [load_connector(p, settings_scope(settings)) for p in paths]
    return [s for s in specs if s.enabled]


def load_naming_file(
    load: Callable[[BaseModel | None, dg.ComponentLoadContext], T],
    attributes: BaseModel | None,
    context: dg.ComponentLoadContext,
    what: str,
) -> T:
    """Run a Component's ``load`` so that a rule its model enforces (a ``kind`` typo, a
    ``tokenize`` without a token column) fails naming the YAML file and each field."""
    try:
        return load(attributes, context)
    except ValidationError as exc:
        where = context.path / "defs.yaml"
        raise ValueError(f"{where}: invalid {what}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """One clause per failing field: ``kind: Input should be 'files', 'mailbox', ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )
