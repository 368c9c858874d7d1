"""A connector declared in YAML: kind, source, trigger, PII policy, landed schema, contract.

Adding a source to the platform is a reviewed YAML file, not new Python. The file names what a
data engineer needs to know and nothing about how it is read::

    name: raw_customers
    kind: files
    contract: customers                # expectations/customers.json (record id from its meta)
    source: {url: "{sources_dir}/crm", pattern: "customers*.csv"}
    trigger: {sensor: {minimum_interval_s: 60}}
    pii:
      email: {action: tokenize, as: email_token}
      full_name: drop
    schema: {customer_id: string, email_token: string, ...}

Two kinds of placeholder, resolved at different times on purpose:

* ``{data_dir}``, ``{sources_dir}``, ``{lake_dir}``: paths from ``Settings``, filled in when the
  definitions are built (they are not secret and the UI shows the real path);
* ``${ENV_VAR}`` / ``${ENV_VAR:-default}``: filled in only when the connector runs, so a DSN
  password never ends up in the asset's description or in the definitions snapshot.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["files", "mailbox", "sql", "http", "nats"]
ColumnType = Literal["string", "int64", "float64", "bool", "timestamp", "date", "list<string>"]

_ENV = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SETTING = re.compile(r"(?<!\$)\{(?P<name>[a-z_]+)\}")  # ${UPPER} env names are not settings
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


class ScheduleTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str


class Trigger(BaseModel):
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

    @field_validator("pii", mode="before")
    @classmethod
    def _short_pii(cls, value: Any) -> Any:
        # ``full_name: drop`` is shorthand for ``full_name: {action: drop}``.
        if isinstance(value, dict):
            return {k: {"action": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

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


def resolve_settings_placeholders(value: Any, paths: dict[str, str]) -> Any:
    """Fill ``{data_dir}``-style placeholders (build time); unknown names are an error."""
    if isinstance(value, dict):
        return {k: resolve_settings_placeholders(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_settings_placeholders(v, paths) for v in value]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m["name"] not in paths:
                raise KeyError(f"unknown placeholder {{{m['name']}}}; known: {sorted(paths)}")
            return paths[m["name"]]

        # ${ENV} placeholders are left for run time (their defaults may use settings).
        return _SETTING.sub(sub, value)
    return value


def resolve_env_placeholders(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Fill ``${VAR}`` / ``${VAR:-default}`` from the environment (run time, secrets)."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: resolve_env_placeholders(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_placeholders(v, env) for v in value]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m["name"] in env:
                return env[m["name"]]
            if m["default"] is not None:
                return m["default"]
            raise KeyError(f"environment variable {m['name']} is not set")

        return _ENV.sub(sub, value)
    return value


def load_spec(path: Path, paths: dict[str, str]) -> ConnectorSpec:
    """Parse and validate one connector file, with build-time placeholders filled in."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a connector file must be a YAML mapping")
    data = resolve_settings_placeholders(data, paths)
    data["path"] = str(path)
    return ConnectorSpec.model_validate(data)
