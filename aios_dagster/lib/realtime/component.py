"""The real-time handler Component: one ``defs.yaml`` per handler under ``defs/realtime/<name>/``.

The YAML declares the handler (see ``handler_spec``); ``aios-dagster serve <name>`` runs it as a
long-running process, and the Component gives Dagster what it needs to see the handler's work:
the reconciliation check on the model's predictions and the check on the handler's lag (see
``realtime.checks``). Templating is the Components' own, as for connectors::

    source:
      kind: kafka
      bootstrap_servers: "{{ env('AIOS_KAFKA_BOOTSTRAP', '127.0.0.1:9092') }}"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import dagster as dg
import yaml
from pydantic import BaseModel, ValidationError

from aios_dagster.lib.connectors.component import (
    describe_errors,
    load_connector,
    load_naming_file,
    settings_scope,
)
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.settings import Settings, current_settings


class HandlerComponent(HandlerSpec, dg.Component, dg.Resolvable):
    """A long-running event handler deciding emails as they arrive (``aios-dagster serve``)."""

    @classmethod
    def get_additional_scope(cls) -> Mapping[str, Any]:
        return settings_scope(current_settings())

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        return load_naming_file(super().load, attributes, context, "real-time handler")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from aios_dagster.lib.realtime.checks import (
            handler_asset,
            handler_checks,
            handler_checks_job,
            handler_checks_schedule,
        )

        data = {**self.model_dump(), "path": str(context.path / "defs.yaml")}
        spec = HandlerSpec.model_validate(data)
        if not spec.enabled:
            return dg.Definitions()
        connector = connector_of(spec, current_settings())
        return dg.Definitions(
            assets=[handler_asset(spec, connector.name)],
            asset_checks=handler_checks(spec, connector.dataset),
            jobs=[handler_checks_job(spec)],
            schedules=[handler_checks_schedule(spec)],
        )


HANDLER_COMPONENT = f"{HandlerComponent.__module__}.{HandlerComponent.__qualname__}"


def load_handler(path: Path, scope: Mapping[str, str]) -> HandlerSpec:
    """One handler's ``defs.yaml``, templated as Dagster would (for ``serve`` and tests)."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("type") != HANDLER_COMPONENT:
        raise ValueError(f"{path}: not a {HANDLER_COMPONENT} declaration")
    try:
        model = HandlerComponent.model().model_validate(doc.get("attributes") or {})
        context = dg.ResolutionContext.default().with_scope(**scope)
        component = HandlerComponent.resolve_from_model(context, model)
        return HandlerSpec.model_validate({**component.model_dump(), "path": str(path)})
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid real-time handler: {describe_errors(exc)}") from exc


def connector_of(spec: HandlerSpec, settings: Settings) -> ConnectorSpec:
    """The connector whose PII policy, schema and contract the handler lands mail with."""
    path = settings.connectors_dir / spec.connector / "defs.yaml"
    if not path.exists():
        raise ValueError(
            f"{spec.path or spec.name}: connector: no connector {spec.connector!r} "
            f"(expected {path})"
        )
    return load_connector(path, settings_scope(settings))


def handler_specs(settings: Settings) -> dict[str, HandlerSpec]:
    """Every enabled handler declared under ``Settings.handlers_dir``, by name."""
    specs = [
        load_handler(p, settings_scope(settings))
        for p in sorted(settings.handlers_dir.glob("*/defs.yaml"))
    ]
    return {s.name: s for s in specs if s.enabled}
