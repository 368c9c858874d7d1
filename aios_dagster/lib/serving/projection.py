"""The Triton model repository as the deployment projection of the model registry.

The registry (MLflow) decides which version holds the ``champion`` and ``challenger`` aliases;
``project_versions`` makes one model directory say exactly that:

* one directory per listed version, numbered as the registry numbers it (so "v3" means the
  same thing in the registry, in Triton and in every decision row);
* ``version_policy: specific { versions: [...] }`` listing exactly those versions, so the next
  ``TritonResource.load_model`` loads them and unloads every other version of the model, in
  the running server (explicit model-control mode), without a restart;
* the deployment as string parameters (``aios_champion_version``, ``aios_challenger_version``,
  ``aios_canary_share``) that scorers read from the config they already fetch, so routing needs
  Triton only, not the registry.

Scorers must pin the version they ask for: a request without one is answered by the highest
listed version, which is the challenger whenever the challenger is newer than the champion.

Version directories that are no longer listed are removed (moved aside in one rename, then
deleted). The repository is a projection, not an archive: the registry keeps every version's
weights, so a rollback cheaply re-projects the old champion, and a directory left
behind would both claim a version number the registry may later mean differently and make the
repository say more than what is deployed. Removing the files does not disturb a version
Triton still serves until the next ``load_model``: backends read their files when a version
loads.

One projection at a time per model: an exclusive ``flock`` on a lock file in the model
directory serialises projections from different processes (a promotion from the CLI while a
Dagster run deploys), so one never prunes a version another has just listed.
"""

from __future__ import annotations

import fcntl
import math
import shutil
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aios_dagster.lib.serving.config_render import (
    SERVING_FORMS,
    ServingForm,
    check_input_name,
    render_config,
)
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.repository_layout import (
    CONFIG_FILE,
    STAGING_PREFIX,
    WEIGHTS_FILE,
    check_model_name,
    list_versions,
    signature,
    stage_version_files,
    version_form,
    write_atomic,
    write_model_card,
)

CHAMPION_PARAMETER = "aios_champion_version"
CHALLENGER_PARAMETER = "aios_challenger_version"
CANARY_SHARE_PARAMETER = "aios_canary_share"
DEPLOYMENT_PARAMETERS = (CHAMPION_PARAMETER, CHALLENGER_PARAMETER, CANARY_SHARE_PARAMETER)
_DEPLOYMENT_PREFIX = "aios_"
_LOCK_FILE = ".projection.lock"


class VersionConflictError(ValueError):
    """A version directory already holds something else than the version being projected.

    Never retried: the registry and the repository disagree on what a version number means
    (for example the registry database was reset while the repository was kept), and only a
    person can tell which one is right.
    """


@dataclass(frozen=True)
class Projection:
    """What ``project_versions`` left on disk for one model."""

    model_name: str
    path: Path  # the model's directory
    form: ServingForm
    versions: tuple[int, ...]  # listed in the config, ascending
    written: tuple[int, ...]  # version directories this call created
    pruned: tuple[int, ...]  # version directories this call removed (no longer listed)
    config_changed: bool
    parameters: Mapping[str, str]


def _version_parameter(model_name: str, key: str, value: str) -> int | None:
    if value == "":
        return None
    if not (value.isdigit() and str(int(value)) == value and int(value) > 0):
        raise ValueError(
            f"model {model_name!r}: parameter {key} must be a version number "
            f'(digits, no sign or leading zero) or "" for none, not {value!r}'
        )
    return int(value)


def check_deployment_parameters(
    model_name: str, versions: list[int], parameters: Mapping[str, str]
) -> dict[str, str]:
    """Validate the ``aios_*`` deployment against the listed versions; the parameters to write.

    The listed versions must be exactly the champion and the challenger: a listed version no
    alias names would be loaded but never routed to, and an alias whose version is not listed
    would route records to a version Triton does not serve. Parameters that do not start with
    ``aios_`` (``delay_ms`` for fault drills) pass through unchecked.
    """
    for key, value in parameters.items():
        if not isinstance(value, str):
            raise ValueError(
                f"model {model_name!r}: parameter {key} must be a string "
                f"(Triton config parameters are strings), not {type(value).__name__}"
            )
    missing = [key for key in DEPLOYMENT_PARAMETERS if key not in parameters]
    if missing:
        raise ValueError(
            f"model {model_name!r}: parameters must set {', '.join(missing)} "
            "(scorers route records by them)"
        )
    unknown = sorted(
        key
        for key in parameters
        if key.startswith(_DEPLOYMENT_PREFIX) and key not in DEPLOYMENT_PARAMETERS
    )
    if unknown:
        raise ValueError(
            f"model {model_name!r}: unknown deployment parameter(s) {', '.join(unknown)}; "
            f"the {_DEPLOYMENT_PREFIX}* parameters are {', '.join(DEPLOYMENT_PARAMETERS)}"
        )
    champion = _version_parameter(model_name, CHAMPION_PARAMETER, parameters[CHAMPION_PARAMETER])
    challenger = _version_parameter(
        model_name, CHALLENGER_PARAMETER, parameters[CHALLENGER_PARAMETER]
    )
    if champion is not None and champion == challenger:
        raise ValueError(
            f"model {model_name!r}: version {champion} cannot be both champion and challenger"
        )
    named = sorted(v for v in (champion, challenger) if v is not None)
    if named != versions:
        raise ValueError(
            f"model {model_name!r}: the versions listed {versions} must be exactly the "
            f"champion ({champion or 'none'}) and the challenger ({challenger or 'none'}): "
            "a version without an alias would never be routed to, an alias without its "
            "version would route to nothing"
        )
    text = parameters[CANARY_SHARE_PARAMETER]
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise ValueError(
            f"model {model_name!r}: parameter {CANARY_SHARE_PARAMETER} must be a number "
            f"between 0 and 1, not {text!r}"
        )
    if challenger is None and share != 0.0:
        raise ValueError(
            f"model {model_name!r}: parameter {CANARY_SHARE_PARAMETER} is {text!r} but there "
            "is no challenger to route records to (set it to 0.0)"
        )
    return dict(parameters)


def _describe(model: LinearHeadsModel) -> str:
    heads = ", ".join(f"{h.name}({len(h.labels)})" for h in model.heads)
    return f"{model.n_features} features, heads {heads}"


def _check_one_signature(
    model_name: str, versions: Mapping[int, LinearHeadsModel], input_name: str
) -> None:
    """All listed versions must share one signature: Triton serves them under one config."""
    by_signature: dict[str, list[int]] = {}
    for version in sorted(versions):
        by_signature.setdefault(signature(versions[version], input_name), []).append(version)
    if len(by_signature) > 1:
        groups = "; ".join(
            f"versions {group}: {_describe(versions[group[0]])}" for group in by_signature.values()
        )
        raise ValueError(
            f"model {model_name!r}: the listed versions differ in feature names, heads or "
            f"labels ({groups}); one Triton config states one signature for every version it "
            "lists, so a signature change needs its own model name (or a projection without "
            "the old version)"
        )


def _check_existing(
    version_dir: Path, model_name: str, version: int, model: LinearHeadsModel, form: str
) -> None:
    """An existing version directory must hold this form and these exact weights."""
    found = version_form(version_dir)
    if found != form:
        raise VersionConflictError(
            f"model {model_name!r} version {version}: {version_dir} holds the "
            f"{found or 'an unrecognised'} form, this projection writes the {form} form; "
            "one model directory serves one form (use another repository for the other)"
        )
    try:
        existing = LinearHeadsModel.from_npz(version_dir / WEIGHTS_FILE).content_hash()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise VersionConflictError(
            f"model {model_name!r} version {version}: cannot read {version_dir / WEIGHTS_FILE} "
            f"to check it against the version being projected ({exc})"
        ) from exc
    wanted = model.content_hash()
    if existing != wanted:
        raise VersionConflictError(
            f"model {model_name!r} version {version}: {version_dir} already holds other "
            f"weights (content hash {existing}) than the version being projected (content "
            f"hash {wanted}); version directories are immutable, so the registry and the "
            "repository disagree on what this version is. Find out which is right; remove "
            "the directory only if it is the repository that is wrong"
        )


def _ensure_version(
    model_dir: Path,
    model_name: str,
    version: int,
    model: LinearHeadsModel,
    *,
    form: ServingForm,
    input_name: str,
    max_batch_size: int,
) -> bool:
    """Write one version directory unless an identical one exists; True if written."""
    target = model_dir / str(version)
    if target.exists():
        _check_existing(target, model_name, version, model, form)
        return False
    staging = model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        stage_version_files(staging, model, form=form, input_name=input_name)
        write_model_card(
            staging,
            model_name,
            version,
            model,
            input_name=input_name,
            max_batch_size=max_batch_size,
            form=form,
        )
        try:
            staging.rename(target)  # atomic; fails if the directory appeared meanwhile
        except OSError:
            if not target.exists():
                raise
            _check_existing(target, model_name, version, model, form)
            return False
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _prune(model_dir: Path, keep: set[int]) -> tuple[int, ...]:
    pruned = []
    for version in list_versions(model_dir.parent, model_dir.name):
        if version in keep:
            continue
        # One rename makes the version vanish at once; the slow delete happens out of sight.
        hidden = model_dir / f"{STAGING_PREFIX}pruned-{version}-{uuid.uuid4().hex}"
        (model_dir / str(version)).rename(hidden)
        shutil.rmtree(hidden, ignore_errors=True)
        pruned.append(version)
    return tuple(pruned)


@contextmanager
def _exclusive(model_dir: Path) -> Iterator[None]:
    with (model_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def project_versions(
    repository: Path,
    model_name: str,
    versions: Mapping[int, LinearHeadsModel],
    *,
    parameters: Mapping[str, str],
    max_batch_size: int,
    input_name: str,
    form: ServingForm = "python",
) -> Projection:
    """Make ``<repository>/<model_name>`` serve exactly ``versions`` (registry numbers).

    Writes the missing version directories (an existing one must hold the same weights, else
    ``VersionConflictError`` naming both content hashes), one ``config.pbtxt`` with a
    ``specific`` policy listing ``versions`` and ``parameters`` (validated by
    ``check_deployment_parameters``), and removes the directories of versions not listed.
    Idempotent: projecting the same state again writes nothing. Triton picks the new state up
    on the next ``TritonResource.load_model(model_name)``.

    ``form`` is ``"python"`` (the CPU Python backend, served locally) or ``"onnx"`` (ONNX
    Runtime with TensorRT on a GPU, the production form; see ``onnx_export``). Both announce
    the same tensors and parameters.
    """
    check_model_name(model_name)
    check_input_name(input_name)
    if form not in SERVING_FORMS:
        raise ValueError(f"serving form {form!r} is not one of {SERVING_FORMS}")
    if not versions:
        raise ValueError(f"model {model_name!r}: project at least one version")
    for version in versions:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(
                f"model {model_name!r}: version numbers are positive integers, not {version!r}"
            )
    listed = sorted(versions)
    params = check_deployment_parameters(model_name, listed, parameters)
    _check_one_signature(model_name, versions, input_name)
    config = render_config(
        model_name,
        versions[listed[-1]],
        max_batch_size=max_batch_size,
        versions=listed,
        extra_parameters=params,
        input_name=input_name,
        form=form,
    )
    model_dir = Path(repository) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(model_dir):
        written = tuple(
            version
            for version in listed
            if _ensure_version(
                model_dir,
                model_name,
                version,
                versions[version],
                form=form,
                input_name=input_name,
                max_batch_size=max_batch_size,
            )
        )
        config_path = model_dir / CONFIG_FILE
        changed = not config_path.exists() or config_path.read_text(encoding="utf-8") != config
        if changed:
            write_atomic(config_path, config)
        # Only after the config stops listing them: a load in between never misses a file.
        pruned = _prune(model_dir, set(listed))
    return Projection(
        model_name=model_name,
        path=model_dir,
        form=form,
        versions=tuple(listed),
        written=written,
        pruned=pruned,
        config_changed=changed,
        parameters=params,
    )
