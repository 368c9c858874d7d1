"""Every Kubernetes manifest under deploy/ against the Kubernetes OpenAPI schema (strict: an
unknown field is an error), and the properties the platform relies on: Triton on GPU nodes with
its probes, metrics and queue-time autoscaling; the UIs small, non-root and read-only."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from aios_dagster.settings import Settings
from tests.deploy.support import DEPLOY, KUBERNETES_VERSION, helm_values, user_deployment
from tests.deploy.support import yaml_documents as documents

# YAML under deploy/ that is configuration, not Kubernetes objects. Any other file must hold
# only manifests, so a new one is validated without being listed anywhere.
NOT_MANIFESTS = {"dagster.yaml", "k8s_job_tags.yaml", "helm/values.yaml"}


def manifest_files() -> list[Path]:
    files = sorted(DEPLOY.rglob("*.yaml"))
    return [f for f in files if f.relative_to(DEPLOY).as_posix() not in NOT_MANIFESTS]


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.relative_to(DEPLOY)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc)
        for path in manifest_files()
        for doc in documents(path)
    ]


def find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in all_manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_the_pinned_kubernetes_version_is_bundled_offline() -> None:
    assert KUBERNETES_VERSION in {
        kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()
    }
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    assert (schemas / f"v{KUBERNETES_VERSION}.0-local-strict" / "deployment-apps-v1.json").is_file()


def test_yaml_under_deploy_is_either_known_configuration_or_manifests() -> None:
    assert manifest_files(), "no manifests found under deploy/"
    for path in manifest_files():
        docs = documents(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: not a manifest"


@pytest.mark.parametrize(("where", "doc"), all_manifests(), ids=[w for w, _ in all_manifests()])
def test_manifest_validates_against_the_kubernetes_schema(where: str, doc: dict[str, Any]) -> None:
    validate(doc)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: container(d).update(readinesProbe=container(d).pop("readinessProbe")),
        lambda d: d["spec"].update(minReadySeconds="soon"),
        lambda d: container(d)["ports"][0].update(containerPort="http"),
    ],
    ids=["misspelt-field", "wrong-type", "port-name-for-number"],
)
def test_the_validator_rejects_a_broken_manifest(break_it: Any) -> None:
    broken = copy.deepcopy(find("Deployment", "triton"))
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_triton_runs_on_gpu_nodes_with_its_health_probes() -> None:
    deployment = find("Deployment", "triton")
    spec = deployment["spec"]["template"]["spec"]
    triton = container(deployment)
    assert triton["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert spec["securityContext"]["runAsNonRoot"] is True
    # The HPA owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment["spec"]


def test_triton_loads_explicitly_from_object_storage_with_secret_credentials() -> None:
    triton = container(find("Deployment", "triton"))
    args = triton["args"]
    assert "--model-control-mode=explicit" in args
    (repository,) = [a for a in args if a.startswith("--model-repository=")]
    assert repository.removeprefix("--model-repository=").startswith("s3://")
    # The pipeline publishes to the prefix the fleet loads from.
    values_env = {e["name"]: e.get("value") for e in user_deployment(helm_values())["env"]}
    assert values_env["AIOS_MODEL_REPOSITORY_URL"] == repository.removeprefix("--model-repository=")
    env = {e["name"]: e for e in triton["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "secretKeyRef" in env[key]["valueFrom"], f"{key} must come from a Secret"


def test_triton_service_exposes_http_grpc_and_scraped_metrics() -> None:
    ports = {p["name"]: p["port"] for p in find("Service", "triton")["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    annotations = find("Deployment", "triton")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    # The code location's Triton URLs point at this Service's ports.
    env = {e["name"]: e["value"] for e in user_deployment(helm_values())["env"]}
    assert env["AIOS_TRITON_GRPC_URL"].endswith(f":{ports['grpc']}")
    assert env["AIOS_TRITON_METRICS_URL"].endswith(f":{ports['metrics']}")


def test_triton_scales_on_queue_time_per_execution_through_the_adapter() -> None:
    hpa = find("HorizontalPodAutoscaler", "triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "triton",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    metric_name = metric["pods"]["metric"]["name"]

    adapter = yaml.safe_load(find("ConfigMap", "prometheus-adapter")["data"]["config.yaml"])
    (rule,) = [r for r in adapter["rules"] if r["name"]["as"] == metric_name]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    numerator, denominator = rule["metricsQuery"].split("\n/\n")
    assert "rate(nv_inference_queue_duration_us{" in numerator
    assert "rate(nv_inference_exec_count{" in denominator


def ui(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return find("Deployment", name), find("Service", name)


@pytest.mark.parametrize("name", ["mlflow-ui", "evidently-ui"])
def test_ui_is_small_non_root_and_probed(name: str) -> None:
    deployment, service = ui(name)
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    c = container(deployment)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][bound].keys()
    assert c["readinessProbe"]["httpGet"] and c["livenessProbe"]["httpGet"]
    assert "nvidia.com/gpu" not in str(c["resources"])
    named_ports = {p["name"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= named_ports
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_mlflow_ui_serves_the_postgres_registry_and_object_storage_artifacts() -> None:
    c = container(find("Deployment", "mlflow-ui"))
    assert c["command"] == ["mlflow", "server"]
    assert flag(c["args"], "--backend-store-uri").startswith("postgresql+psycopg://")
    assert "$(MLFLOW_DB_PASSWORD)" in flag(c["args"], "--backend-store-uri")
    assert flag(c["args"], "--default-artifact-root").startswith("s3://")
    env = {e["name"]: e for e in c["env"]}
    assert "secretKeyRef" in env["MLFLOW_DB_PASSWORD"]["valueFrom"]
    # The pipeline writes artifacts where this UI reads them.
    values_env = {e["name"]: e["value"] for e in user_deployment(helm_values())["env"]}
    artifact_root = flag(c["args"], "--default-artifact-root")
    assert values_env["AIOS_MLFLOW_ARTIFACT_LOCATION"] == artifact_root


def test_evidently_ui_reads_the_pipelines_workspace_read_only() -> None:
    deployment = find("Deployment", "evidently-ui")
    c = container(deployment)
    assert c["command"] == ["evidently", "ui"]
    # The folder the drift assets write (Settings) on the volume the code location mounts.
    data_mount = user_deployment(helm_values())["volumeMounts"][0]["mountPath"]
    workspace = Settings.from_env({"AIOS_DATA_DIR": data_mount}).drift_workspace_dir
    assert c["args"] == ["--workspace", str(workspace), "--host", "0.0.0.0", "--port", "8010"]
    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == data_mount and mount["readOnly"] is True
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
