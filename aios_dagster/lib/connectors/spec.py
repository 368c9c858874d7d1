"""The schema of a declared connector: kind, source, trigger, PII policy, landed schema, contract.

``ConnectorComponent`` (``component.py``) is this schema as a Dagster Component; its YAML lives in
``defs/ingest/<name>/defs.yaml`` and is templated by Dagster (``{{ sources_dir }}``,
``{{ env('VAR', 'default') }}``) before it is validated here. Validation names the file and field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["files", "mailbox", "sql", "http", "nats"]
ColumnType = Literal["string", "int64", "float64", "bool", "timestamp", "date", "list<string>"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PiiRule(BaseModel):
    """What happens to one source column before anything is written.

    ``tokenize``: keyed HMAC token under ``as`` (joins across sources, value never stored);
    ``mask``: free text keeps its words, detected identifiers become ``[EMAIL]``, ``[CARD]``...,
    and the words of the column named by ``names_from`` (e.g. the sender's display name) become
    ``[NAME]``; ``drop``: the column never leaves the connector.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal["tokenize", "mask", "drop"]
    as_: str | None = Field(default=None, alias="as")
    names_from: str | None = None


class SensorTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minimum_interval_s: int = 30
    job: str | None = None  # a job of the code location to run instead of the connector's own
    default_running: bool = False


class ScheduleTrigger(dg.Model, dg.Resolvable):
    """Resolvable, so its cron may be templated (``{{ env('VAR', '*/15 * * * *') }}``)."""

    model_config = ConfigDict(extra="forbid")

    cron: str


class Trigger(dg.Model, dg.Resolvable):
    model_config = ConfigDict(extra="forbid")

    sensor: SensorTrigger | None = None
    schedule: ScheduleTrigger | None = None


class ConnectorSpec(BaseModel):
    """One declared connector; validated when the definitions load so a typo fails early."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind
    contract: str
    description: str = ""
    group: str = "ingest"
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    source: dict[str, Any]
    trigger: Trigger = Field(default_factory=Trigger)
    pii: dict[str, PiiRule] = Field(default_factory=dict)
    schema_: dict[str, ColumnType] = Field(alias="schema")
    enabled: bool = True  # optional systems: templated, e.g. "{{ env.AIOS_NATS_URL is not none }}"
    path: str | None = None  # the YAML file it came from, for error messages

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        where = self.path or self.name
        if not _NAME.match(self.name):
            raise ValueError(f"{where}: connector name {self.name!r} must be snake_case")
        for column, rule in self.pii.items():
            if rule.action == "tokenize" and not rule.as_:
                raise ValueError(f"{where}: pii.{column}: tokenize needs 'as: <token column>'")
            if rule.names_from and rule.action != "mask":
                raise ValueError(f"{where}: pii.{column}: names_from only applies to mask")
            if rule.names_from and rule.names_from not in self.pii:
                raise ValueError(
                    f"{where}: pii.{column}.names_from={rule.names_from!r} must itself have a pii"
                    " rule (a name column cannot be landed in clear)"
                )
        produced = {r.as_ for r in self.pii.values() if r.as_}
        missing = produced - set(self.schema_)
        if missing:
            raise ValueError(f"{where}: token columns {sorted(missing)} are not in schema")
        return self

    @property
    def dataset(self) -> str:
        """The lake dataset the contract governs (``raw_<dataset>``, ``quarantine_<dataset>``)."""
        return self.contract

    @property
    def expected_source_columns(self) -> set[str]:
        """Columns the source must provide: landed ones not made by PII rules, plus PII inputs."""
        produced = {r.as_ for r in self.pii.values() if r.as_}
        return (set(self.schema_) - produced) | set(self.pii)
