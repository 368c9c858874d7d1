"""The model registry: MLflow's Model Registry plus the audit trail MLflow lacks.

Each training is an MLflow run (parameters, metrics, ``model/weights.npz``, ``lineage.json``
and any extra artifacts) and each distinct set of weights one registered model version, whose
integer number is also the version Triton serves. Aliases (``champion``, ``challenger``) are
MLflow aliases; who moved them, when and why, and every approval, go to the append-only tables
of ``governance.py`` in the same backend database.

Embedded: a SQLite backend store and an artifact folder under the data directory. Production:
a PostgreSQL backend store (``postgresql+psycopg://``) and object storage, from the
environment. MLflow is imported inside methods (it takes seconds), and never phones home.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from aios_dagster.lib.lifecycle import aliases
from aios_dagster.lib.lifecycle.governance import (
    DECISIONS,
    AliasEvent,
    Approval,
    GovernanceStore,
    require_text,
)
from aios_dagster.lib.lifecycle.lineage import Lineage
from aios_dagster.lib.lifecycle.mlflow_runs import (
    CONTENT_HASH,
    LINEAGE,
    WEIGHTS,
    artifact_path,
    checked_files,
    log_training_run,
    parent_path,
    write_files,
)
from aios_dagster.lib.serving.linear_model import LinearHeadsModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

APPROVAL_TAGS = ("approval_status", "approved_by", "approved_at", "approval_reason")
#: MLflow reads these when imported: no telemetry, no progress bars in Dagster logs.
MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class RegistryError(Exception):
    """A request the registry's state does not allow (unknown version, rejected version);
    retrying cannot help."""


class ApprovalError(RegistryError):
    """A version that needs a person's approval does not have it (or was rejected)."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    content_hash: str
    created: bool  # False: identical weights were registered before, that version returned


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    created_at: datetime
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    approval: Approval | None

    @property
    def content_hash(self) -> str:
        return self.tags.get(CONTENT_HASH, "")


def mlflow_environment() -> None:
    """Set MLflow's opt-outs before it is imported (an explicit setting wins): ``import
    mlflow`` itself starts the telemetry client, so this must come before any mlflow import."""
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)


class ModelRegistry(dg.ConfigurableResource):
    """Registered model versions, aliases with their history, approvals, version artifacts.

    ``tracking_uri``: ``sqlite:///<data>/mlflow/mlflow.db`` embedded,
    ``postgresql+psycopg://...`` in production (one database for MLflow and the audit tables).
    ``artifact_location``: a folder, or an object-store URI such as ``s3://bucket/mlflow``.
    """

    tracking_uri: str
    artifact_location: str

    _client_cache: Any = PrivateAttr(default=None)
    _store_cache: Any = PrivateAttr(default=None)

    # --- plumbing ----------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        if self._client_cache is None:
            mlflow_environment()
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            from mlflow import MlflowClient

            self._client_cache = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client_cache

    @property
    def audit(self) -> GovernanceStore:
        if self._store_cache is None:
            self._store_cache = GovernanceStore(self.tracking_uri)
        return self._store_cache

    def _experiment_id(self, name: str) -> str:
        mlflow_environment()
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = f"{self.artifact_location.rstrip('/')}/{name}"
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # created by a concurrent run meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise exc from None
            return experiment.experiment_id

    def _model_version(self, name: str, version: int) -> Any:
        mlflow_environment()
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(int(version)))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = [v.version for v in self.versions(name)]
        raise RegistryError(
            f"{name} v{version} does not exist in the registry (versions: {known or 'none'})"
        )

    def model_names(self) -> list[str]:
        return sorted(m.name for m in self.client.search_registered_models())

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of the model now, with its version (RegistryError: no such model)."""
        mlflow_environment()
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(
                f"no registered model {name!r} (registered: {self.model_names() or 'none'})"
            ) from None
        return {alias: int(version) for alias, version in model.aliases.items()}

    # --- versions ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: LinearHeadsModel,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        lineage: Lineage,
        artifacts: Mapping[str, bytes | str | Path] | None = None,
    ) -> RegisteredVersion:
        """Log one MLflow run for this training and register its weights as a version.

        Identical weights (same ``content_hash``) return the version that has them, with
        ``created=False`` and no new run: retraining on unchanged data does not grow the
        registry. The version is created last, so a failure leaves a FAILED run and no version.
        """
        mlflow_environment()
        from mlflow.exceptions import MlflowException

        content_hash = model.content_hash()
        if lineage.content_hash != content_hash:
            raise ValueError(
                f"{name}: lineage.content_hash {lineage.content_hash[:12]} does not match the "
                f"model's weights {content_hash[:12]}; build the lineage from this model"
            )
        files = checked_files(artifacts or {})
        existing = self.client.search_model_versions(
            f"name = '{_quoted(name)}' and tags.{CONTENT_HASH} = '{content_hash}'"
        )
        if existing:
            first = min(existing, key=lambda v: int(v.version))
            return RegisteredVersion(name, int(first.version), first.run_id, content_hash, False)
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = log_training_run(
            self.client,
            self._experiment_id(name),
            model,
            model_name=name,
            params=params,
            metrics=metrics,
            lineage=lineage,
            files=files,
        )
        run_id = run.info.run_id
        try:
            version = self.client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/model",
                run_id=run_id,
                tags=lineage.version_tags(),
            )
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        return RegisteredVersion(name, int(version.version), run_id, content_hash, True)

    def load_model(self, name: str, version: int) -> LinearHeadsModel:
        """The version's weights, checked against the content hash it was registered with."""
        mv = self._model_version(name, version)
        with tempfile.TemporaryDirectory(prefix="aios-load-") as tmp:
            path = self.client.download_artifacts(mv.run_id, WEIGHTS, tmp)
            model = LinearHeadsModel.from_npz(Path(path))
        expected = mv.tags.get(CONTENT_HASH)
        if model.content_hash() != expected:
            raise RegistryError(
                f"{name} v{version}: stored weights hash {model.content_hash()[:12]} but the "
                f"version was registered with {str(expected)[:12]}; the artifact store was "
                "changed behind the registry"
            )
        return model

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first, with its tags, aliases and approval."""
        aliases = self.aliases(name)
        found = self.client.search_model_versions(f"name = '{_quoted(name)}'")
        decisions = {a.version: a for a in self.audit.approvals(name)}
        return [_info(mv, aliases, decisions) for mv in sorted(found, key=lambda v: int(v.version))]

    def version(self, name: str, version: int) -> VersionInfo:
        mv = self._model_version(name, version)
        decisions = {a.version: a for a in self.audit.approvals(name, version)}
        return _info(mv, self.aliases(name), decisions)

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        return dict(self._model_version(name, version).tags)

    def version_params(self, name: str, version: int) -> dict[str, str]:
        """The parameters logged with the training run that produced the version."""
        return dict(self.client.get_run(self._model_version(name, version).run_id).data.params)

    def version_metrics(self, name: str, version: int) -> dict[str, float]:
        return dict(self.client.get_run(self._model_version(name, version).run_id).data.metrics)

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        self._model_version(name, version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, str(value))

    def log_version_artifacts(
        self, name: str, version: int, files: Mapping[str, bytes | str]
    ) -> None:
        """Write files into the version's run (an existing path is replaced)."""
        mv = self._model_version(name, version)
        checked = checked_files(files)
        with tempfile.TemporaryDirectory(prefix="aios-artifacts-") as tmp:
            write_files(Path(tmp), checked)
            self.client.log_artifacts(mv.run_id, tmp)

    def read_version_artifact(self, name: str, version: int, path: str) -> bytes:
        """Bytes of an artifact of the version's run; FileNotFoundError if it has none."""
        mv = self._model_version(name, version)
        relative = artifact_path(path)
        listed = {f.path: f for f in self.client.list_artifacts(mv.run_id, parent_path(relative))}
        if relative not in listed:
            raise FileNotFoundError(f"{name} v{version} has no artifact {path!r}")
        if listed[relative].is_dir:
            raise FileNotFoundError(f"{name} v{version}: artifact {path!r} is a folder")
        with tempfile.TemporaryDirectory(prefix="aios-read-") as tmp:
            return Path(self.client.download_artifacts(mv.run_id, relative, tmp)).read_bytes()

    def lineage(self, name: str, version: int) -> Lineage:
        return Lineage.from_json(self.read_version_artifact(name, version, LINEAGE).decode())

    # --- aliases -----------------------------------------------------------------------

    def get_alias(self, name: str, alias: str) -> int | None:
        """The version holding ``alias`` now (None: no such alias, or no such model yet)."""
        try:
            return self.aliases(name).get(alias)
        except RegistryError:
            return None

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str, reason: str
    ) -> AliasEvent:
        """Point ``alias`` at ``version``, recording who, when, why and the version before
        (write order and crash safety: ``aliases.py``)."""
        actor, reason = require_text("actor", actor), require_text("reason", reason)
        self._model_version(name, version)
        return aliases.move_alias(self, name, alias, int(version), actor=actor, reason=reason)

    def clear_alias(self, name: str, alias: str, *, actor: str, reason: str) -> AliasEvent | None:
        """Remove ``alias`` (recorded like ``set_alias``); None when it was not set."""
        actor, reason = require_text("actor", actor), require_text("reason", reason)
        if self.get_alias(name, alias) is None:
            return None
        return aliases.move_alias(self, name, alias, None, actor=actor, reason=reason)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Applied alias changes of ``name`` (one alias, or all), oldest first."""
        aliases.settle_all(self, name)
        return self.audit.history(name, alias)

    def version_at(self, name: str, alias: str, when: datetime) -> int | None:
        """Which version held ``alias`` at ``when`` (timezone-aware) - MLflow issue #2169."""
        return aliases.version_at(self.alias_history(name, alias), when)

    def previous_champion(self, name: str) -> int | None:
        """The champion before the current one (what a rollback restores - MLflow #6180).

        Rollbacks are taken off the stack of champions (``aliases.champion_stack``), so a
        second rollback goes further back rather than back to the version just rolled back.
        """
        stack = aliases.champion_stack(self.alias_history(name, "champion"))
        current = self.get_alias(name, "champion")
        if len(stack) >= 2 and stack[-1] == current:
            return stack[-2]
        return None

    # --- approvals ---------------------------------------------------------------------

    def record_decision(
        self, name: str, version: int, decision: str, *, actor: str, reason: str
    ) -> Approval:
        """Append an approval or rejection, then mirror it in tags on the MLflow version.

        The log is written first and is what ``approval`` and ``require_approved`` read; the
        tags are a view for the MLflow UI, rewritten by every decision. A rejection is final:
        a rejected version cannot be approved later (train a new version instead). A stored
        model card is re-rendered with the decision.
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {list(DECISIONS)}, not {decision!r}")
        actor, reason = require_text("actor", actor), require_text("reason", reason)
        self._model_version(name, version)
        rejected = [a for a in self.audit.approvals(name, version) if a.decision == "rejected"]
        if decision == "approved" and rejected:
            r = rejected[0]
            raise ApprovalError(
                f"{name} v{version} was rejected by {r.actor} at {r.at:%Y-%m-%d %H:%M} UTC "
                f"({r.reason}); a rejected version cannot be approved, train a new one"
            )
        approval = self.audit.record_approval(name, version, decision, actor=actor, reason=reason)
        self.set_version_tags(name, version, _approval_tags(approval))
        from aios_dagster.lib.lifecycle.cards import refresh_card_approvals

        refresh_card_approvals(self, name, version)
        return approval

    def approvals(self, name: str, version: int) -> list[Approval]:
        """Every decision on the version, oldest first."""
        return self.audit.approvals(name, version)

    def approval(self, name: str, version: int) -> Approval | None:
        """The latest decision on the version (None: nobody decided yet)."""
        decisions = self.audit.approvals(name, version)
        return decisions[-1] if decisions else None

    def require_approved(self, name: str, version: int) -> Approval:
        """The approval that allows promoting the version; ApprovalError if there is none."""
        self._model_version(name, version)
        decisions = self.audit.approvals(name, version)
        rejected = [a for a in decisions if a.decision == "rejected"]
        if rejected:
            r = rejected[-1]
            raise ApprovalError(
                f"{name} v{version} was rejected by {r.actor} ({r.reason}); it can never be "
                "promoted"
            )
        if not decisions:
            raise ApprovalError(
                f"{name} v{version} needs a person's approval before promotion: "
                f"aios-dagster models approve {name} {version} --reason ..."
            )
        return decisions[-1]


def _info(mv: Any, aliases: Mapping[str, int], decisions: Mapping[int, Approval]) -> VersionInfo:
    """A VersionInfo from an MLflow ModelVersion; aliases come from the registered model
    because search_model_versions leaves them out (MLflow #9783)."""
    version = int(mv.version)
    return VersionInfo(
        name=mv.name,
        version=version,
        created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
        run_id=mv.run_id,
        tags=dict(mv.tags),
        aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        approval=decisions.get(version),
    )


def _approval_tags(approval: Approval) -> dict[str, str]:
    return dict(
        zip(
            APPROVAL_TAGS,
            (approval.decision, approval.actor, approval.at.isoformat(), approval.reason),
            strict=True,
        )
    )


def _quoted(value: str) -> str:
    """A value for an MLflow search filter: single quotes would end the literal."""
    if "'" in value:
        raise ValueError(f"model name {value!r} must not contain a single quote")
    return value
