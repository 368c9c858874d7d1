"""What the deploy tests share: where deploy/ is, how its YAML reads, the Kubernetes version, and
the environment the Helm values give the code location."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# The cluster version the manifests are written for; kubernetes-validate bundles its schemas
# (test_manifests checks that), so validation never downloads anything.
KUBERNETES_VERSION = "1.30"

# Keys of the aios-secrets Secret without which the production profile refuses to start, with
# placeholders (nothing connects while definitions load).
SECRET_PLACEHOLDERS = {
    "AIOS_PII_KEY": "placeholder-not-a-key",
    "AIOS_MLFLOW_TRACKING_URI": "postgresql+psycopg://mlflow:placeholder@127.0.0.1:9/mlflow",
}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def helm_values() -> dict[str, Any]:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


def user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def production_env(data_dir: Path) -> dict[str, str]:
    """The code location's environment in the cluster: the values' env, the Secret's keys, and
    a scratch data dir in place of the volume."""
    env = {item["name"]: item["value"] for item in user_deployment(helm_values())["env"]}
    return {**env, **SECRET_PLACEHOLDERS, "AIOS_DATA_DIR": str(data_dir)}


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Pod around one container, to validate pod-level fragments as Kubernetes would."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fragment"},
        "spec": {"containers": [{"name": "c", "image": "img", **container}], **spec},
    }


def default_signals() -> None:
    """Child processes may inherit ignored SIGTERM/SIGINT; restore them so terminate() works."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
