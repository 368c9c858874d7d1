"""A real-time handler as declared in YAML: its event source, batching and pipeline of steps.

Declared beside the model it serves (``defs/realtime/<name>/defs.yaml``); adding a handler for
another model or mailbox is another such file. The steps are names from ``steps.STEPS``, in
order; each step says what it needs and what it gives, so a pipeline that reads something no
earlier step gave fails when the definitions load, naming the file and the step.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from aios_dagster.lib.realtime.folder_source import FolderSourceConfig
from aios_dagster.lib.realtime.kafka_source import KafkaSourceConfig
from aios_dagster.lib.realtime.nats_events import NatsEventsConfig
from aios_dagster.lib.realtime.sinks import SinksConfig
from aios_dagster.lib.realtime.state import RepeatSenderConfig

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# What each step reads and writes on the work item (``steps.Work``).
STEP_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "parse": ((), ("parsed",)),
    "land": (("parsed",), ("landed",)),
    "features": (("landed",), ("features",)),
    "score": (("features",), ("decisions",)),
    "remember": (("decisions",), ("tickets",)),  # state: tickets per thread, repeat senders
    "sink": (("decisions",), ("delivered",)),  # the topics and the RPA queue of ``sinks:``
    "persist": (("decisions",), ("persisted",)),
}
DEFAULT_STEPS = ["parse", "land", "features", "score", "persist"]


class KafkaSource(KafkaSourceConfig):
    kind: Literal["kafka"] = "kafka"


class FolderSource(FolderSourceConfig):
    kind: Literal["folder"] = "folder"


Source = KafkaSource | FolderSource | NatsEventsConfig


_SOURCE: TypeAdapter[Source] = TypeAdapter(Annotated[Source, Field(discriminator="kind")])


class BatchConfig(dg.Model, dg.Resolvable):
    """How many events one pass takes: bounded in-flight work is the backpressure."""

    model_config = ConfigDict(extra="forbid")

    max_events: int = Field(default=100, gt=0, le=10_000)
    linger_ms: int = Field(default=20, ge=0)  # how long a pass waits for more events


class ChecksConfig(dg.Model, dg.Resolvable):
    """Thresholds of the handler's checks in Dagster (``realtime.checks``)."""

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(default=7, gt=0)  # how far back reconciliation looks
    grace_minutes: float = Field(default=10.0, ge=0)  # mail this young may still be in flight
    max_lag: int = Field(default=1_000, ge=0)
    max_latency_s: float = Field(default=5.0, gt=0)
    stale_after_s: float = Field(default=120.0, gt=0)
    cron: str = "*/5 * * * *"  # the checks' schedule (off until an operator starts it)


class HandlerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str  # a ModelComponent's name: whose features, Triton model and policy
    connector: str  # a ConnectorComponent's name: whose PII policy, schema and contract land mail
    description: str = ""
    source: dict[str, Any]  # ``kind:`` kafka, nats or folder, and its settings (see below)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    steps: list[str] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    report_every_s: float = Field(default=30.0, gt=0)  # how often Dagster hears of the handler
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    repeat_sender: RepeatSenderConfig | None = None  # with the ``remember`` step
    sinks: dict[str, Any] = Field(default_factory=dict)  # ``sink`` step (see realtime.sinks)
    enabled: bool = True
    path: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HandlerSpec:
        where = self.path or self.name
        self.source_config()  # a bad source fails here, naming the file and the field
        if not _NAME.match(self.name):
            raise ValueError(f"{where}: handler name {self.name!r} must be snake_case")
        given: set[str] = set()
        for step in self.steps:
            if step not in STEP_IO:
                raise ValueError(f"{where}: steps: unknown step {step!r} (known: {list(STEP_IO)})")
            needs, gives = STEP_IO[step]
            missing = [n for n in needs if n not in given]
            if missing:
                raise ValueError(
                    f"{where}: steps: {step!r} needs {missing}, which no step before it gives"
                )
            given.update(gives)
        if self.steps[-1:] != ["persist"]:
            raise ValueError(f"{where}: steps: the pipeline must end in 'persist'")
        sinks = self.sinks_config()
        if (sinks.topics or sinks.rpa) and "sink" not in self.steps:
            raise ValueError(f"{where}: sinks are declared but no 'sink' step delivers to them")
        if "sink" in self.steps and not (sinks.topics or sinks.rpa):
            raise ValueError(f"{where}: the 'sink' step needs a sinks: block")
        if self.repeat_sender is not None and "remember" not in self.steps:
            raise ValueError(f"{where}: repeat_sender needs the 'remember' step")
        return self

    def sinks_config(self) -> SinksConfig:
        return self._validated("sinks", TypeAdapter(SinksConfig), self.sinks)

    def source_config(self) -> Source:
        """The source, validated for its kind (kept a plain mapping for the Components'
        templating, like a connector's ``source``)."""
        return self._validated("source", _SOURCE, self.source)

    def _validated(self, field: str, adapter: TypeAdapter[Any], value: Any) -> Any:
        """``value`` through ``adapter``; errors name the file and each ``field.<path>``."""
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"{self.path or self.name}: {problems}") from None
