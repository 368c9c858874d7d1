"""deploy/helm/values.yaml against the Dagster chart's own values.schema.json (vendored), the run
launcher and executor config and the per-job dagster-k8s/config tags (deploy/k8s_job_tags.yaml)
through dagster-k8s' own config schemas, and those tags against the jobs the code defines."""

from __future__ import annotations

import copy
import functools
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import kubernetes_validate
import pytest
import referencing
import referencing.exceptions
import referencing.jsonschema
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

from aios_dagster.lib.orchestration import PREDICTIONS_WRITER_TAG
from tests.deploy.support import (
    DEPLOY,
    KUBERNETES_VERSION,
    helm_values,
    load_yaml,
    pod,
    production_env,
    user_deployment,
)

CHART_SCHEMA = DEPLOY / "helm" / "vendor" / "dagster-chart-2bdb239" / "values.schema.json"
# Where the chart's Kubernetes $refs point (online); resolved to kubernetes-validate's copy.
CHART_K8S_DEFINITIONS = (
    "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0"
    "/_definitions.json"
)
RELEASE_NAMESPACE = "aios"


# -- the chart's schema ---------------------------------------------------------------------------
@functools.cache
def _kubernetes_definitions(uri: str) -> referencing.Resource:
    if uri != CHART_K8S_DEFINITIONS:
        raise referencing.exceptions.NoSuchResource(ref=uri)
    # Non-strict, as the chart's own refs: its wrappers add keys (`enabled` on probes).
    path = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{KUBERNETES_VERSION}.0-local"
        / "_definitions.json"
    )
    definitions = json.loads(path.read_text())["$defs"]
    # The chart says #/definitions/..., the bundled file's own refs say #/$defs/...
    return referencing.jsonschema.DRAFT202012.create_resource(
        {"$defs": definitions, "definitions": definitions}
    )


@functools.cache
def _chart_validator() -> jsonschema.Draft202012Validator:
    registry: referencing.Registry = referencing.Registry(retrieve=_kubernetes_definitions)
    return jsonschema.Draft202012Validator(json.loads(CHART_SCHEMA.read_text()), registry=registry)


def _supplied_by_chart_defaults(error: jsonschema.ValidationError) -> bool:
    """Helm validates our values deep-merged over the chart's values.yaml (not vendored): a key
    missing at a map position comes from the chart's defaults, one missing inside a list item
    does not (lists are replaced whole)."""
    if error.validator == "required":
        return not any(isinstance(step, int) for step in error.absolute_path)
    if error.validator in ("anyOf", "oneOf"):
        branches: dict[Any, list[jsonschema.ValidationError]] = defaultdict(list)
        for sub in error.context or []:
            branches[sub.relative_schema_path[0]].append(sub)
        return any(all(_supplied_by_chart_defaults(s) for s in subs) for subs in branches.values())
    return False


def chart_errors(values: dict[str, Any]) -> list[str]:
    errors = [
        e for e in _chart_validator().iter_errors(values) if not _supplied_by_chart_defaults(e)
    ]
    return [f"{'/'.join(map(str, e.absolute_path))}: {_why(e)}" for e in errors]


def _why(error: jsonschema.ValidationError) -> str:
    """An anyOf failure says little; its branch errors (other than "not null") say what."""
    reasons = [sub.message for sub in error.context or [] if sub.validator_value != "null"]
    return "; ".join(reasons) if reasons else error.message


def test_values_validate_against_the_chart_schema() -> None:
    assert chart_errors(helm_values()) == []


def _k8s_launcher(values: dict[str, Any]) -> dict[str, Any]:
    return values["runLauncher"]["config"]["k8sRunLauncher"]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda v: _k8s_launcher(v).update(jobNamepace="aios"), "jobNamepace"),
        (lambda v: v["dagsterDaemon"]["runCoordinator"].update(type="QueuedRunCoord"), "QueuedRun"),
        (lambda v: user_deployment(v).pop("port"), "'port' is a required property"),
        (lambda v: user_deployment(v).update(port="3030"), "'3030'"),
        (lambda v: v["postgresql"].update(enabled="no"), "'no'"),
    ],
    ids=["misspelt-key", "unknown-enum", "list-item-missing-required", "wrong-type", "not-bool"],
)
def test_the_chart_schema_rejects_broken_values(break_it: Any, expected: str) -> None:
    values = helm_values()
    break_it(values)
    errors = chart_errors(values)
    assert errors and expected in "\n".join(errors)


def test_the_chart_schemas_kubernetes_refs_resolve_offline() -> None:
    # A wrong type inside a Kubernetes structure is caught only if the refs really resolve.
    values = helm_values()
    user_deployment(values)["volumes"][0]["persistentVolumeClaim"] = {"claimName": 5}
    assert chart_errors(values)


# -- the run launcher as the chart renders it into dagster.yaml ------------------------------------
def render_run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's templates/helpers/instance/_run-launcher.tpl (K8sRunLauncher branch), so the
    rendered instance config can meet dagster-k8s' own schema without a helm binary."""
    launcher = _k8s_launcher(values)
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": values["serviceAccount"]["name"],
        "dagster_home": "/opt/dagster/dagster_home",  # the chart's global.dagsterHome default
        "instance_config_map": "aios-dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    names = {"envConfigMaps": "env_config_maps", "envSecrets": "env_secrets"}
    for key, target in names.items():
        if launcher.get(key):
            config[target] = [item["name"] for item in launcher[key] if "name" in item]
    copied = {
        "kubeconfigFile": "kubeconfig_file",
        "envVars": "env_vars",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "schedulerName": "scheduler_name",
        "securityContext": "security_context",
    }
    config.update({target: launcher[key] for key, target in copied.items() if launcher.get(key)})
    if launcher.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    run_k8s = launcher.get("runK8sConfig") or {}
    sections = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    if run_k8s:
        config["run_k8s_config"] = {t: run_k8s[k] for k, t in sections.items() if run_k8s.get(k)}
    return config


def validate_with_dagster(config_schema: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Dagster's own config validation (public API): the value as one op's config."""

    @dg.op(config_schema=config_schema)
    def probe() -> None: ...

    @dg.job
    def config_probe() -> None:
        probe()

    run_config = {"ops": {"probe": {"config": config}}}
    return dg.validate_run_config(config_probe, run_config)["ops"]["probe"]["config"]


def test_run_launcher_config_validates_with_dagster_k8s() -> None:
    rendered = render_run_launcher(helm_values())
    processed = validate_with_dagster(K8sRunLauncher.config_type(), rendered)
    assert processed["job_namespace"] == RELEASE_NAMESPACE
    # dagster-k8s' model checks: every key of the raw pod/job config is a Kubernetes field.
    run_k8s = UserDefinedDagsterK8sConfig.from_dict(processed["run_k8s_config"])
    assert run_k8s.pod_spec_config["node_selector"]
    spec = processed["run_k8s_config"]["pod_spec_config"]
    kubernetes_validate.validate(
        pod({"securityContext": processed["security_context"]}, **spec),
        KUBERNETES_VERSION,
        strict=True,
    )


def test_dagster_k8s_rejects_a_broken_run_launcher_config() -> None:
    values = helm_values()
    _k8s_launcher(values)["loadInclusterConfig"] = "yes"
    with pytest.raises(dg.DagsterInvalidConfigError):
        validate_with_dagster(K8sRunLauncher.config_type(), render_run_launcher(values))


def test_values_match_the_instance_file_for_running_dagster_yourself() -> None:
    """deploy/dagster.yaml is the same production instance outside the chart: one run queue."""
    queued = helm_values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator = load_yaml(DEPLOY / "dagster.yaml")["run_coordinator"]["config"]
    assert queued["maxConcurrentRuns"] == coordinator["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == coordinator["tag_concurrency_limits"]
    assert PREDICTIONS_WRITER_TAG in {limit["key"] for limit in queued["tagConcurrencyLimits"]}


def test_code_location_pod_fields_are_valid_kubernetes() -> None:
    # The chart's refs are lenient about unknown fields; Kubernetes' strict schema is not.
    deployment = user_deployment(helm_values())
    container = {
        key: deployment[key] for key in ("env", "resources", "securityContext", "volumeMounts")
    }
    spec = {
        "securityContext": deployment["podSecurityContext"],
        "nodeSelector": deployment["nodeSelector"],
        "volumes": deployment["volumes"],
    }
    kubernetes_validate.validate(pod(container, **spec), KUBERNETES_VERSION, strict=True)


# -- per-job dagster-k8s/config tags -------------------------------------------------------------
def job_tags() -> dict[str, Any]:
    return load_yaml(DEPLOY / "k8s_job_tags.yaml")


def parse_tag(config: dict[str, Any]) -> UserDefinedDagsterK8sConfig:
    """What dagster-k8s does with a job's tags when it builds the run pod."""
    return get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(config)})


@pytest.mark.parametrize("job", sorted(job_tags()["jobs"]))
def test_job_tag_parses_with_dagster_k8s_and_sizes_cpu_and_memory_only(job: str) -> None:
    parsed = parse_tag(job_tags()["jobs"][job])
    resources = parsed.container_config["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}, f"{job}: {bound} {resources[bound]}"
    kubernetes_validate.validate(pod({"resources": resources}), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "broken",
    [
        {"container_confg": {"resources": {}}},
        {"container_config": {"resorces": {"limits": {"memory": "1Gi"}}}},
    ],
    ids=["unknown-section", "unknown-container-field"],
)
def test_dagster_k8s_rejects_a_broken_job_tag(broken: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"container_confg|resorces"):
        parse_tag(broken)


def test_nothing_of_the_gpu_in_dagster_pods() -> None:
    """GPU-bound serving is Triton's (deploy/triton/); Dagster pods are the CPU class."""
    for what in (helm_values(), job_tags()):
        assert "nvidia.com" not in json.dumps(what)
    selector = user_deployment(helm_values())["nodeSelector"]
    run_pods = _k8s_launcher(helm_values())["runK8sConfig"]["podSpecConfig"]["nodeSelector"]
    assert selector == run_pods


@pytest.fixture(scope="module")
def production_definitions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.Definitions]:
    """The definitions as the code location loads them with the Helm values' environment
    (which switches the optional connectors, and their jobs, on)."""
    from aios_dagster.definitions import defs

    with pytest.MonkeyPatch.context() as env:
        for key, value in production_env(tmp_path_factory.mktemp("data")).items():
            env.setenv(key, value)
        yield defs()


def test_job_tags_name_exactly_the_jobs_of_the_code_location(
    production_definitions: dg.Definitions,
) -> None:
    jobs = {job.name for job in production_definitions.resolve_all_job_defs()}
    jobs.discard("__ASSET_JOB")  # the implicit all-assets job: never launched as such
    assert set(job_tags()["jobs"]) == jobs


def test_every_job_carries_its_pod_size_from_the_tags_file(
    production_definitions: dg.Definitions,
) -> None:
    """What the K8sRunLauncher reads from a run of each job: the file's entry, parsed as
    dagster-k8s parses it when it builds the run pod."""
    expected = job_tags()["jobs"]
    for job in production_definitions.resolve_all_job_defs():
        if job.name == "__ASSET_JOB":
            continue
        parsed = get_user_defined_k8s_config(job.tags)
        assert parsed.container_config == expected[job.name]["container_config"], job.name


def test_k8s_job_executor_config_validates_and_names_real_steps(
    production_definitions: dg.Definitions,
) -> None:
    config = job_tags()["k8s_job_executor"]

    @dg.job(executor_def=k8s_job_executor)
    def stepwise() -> None: ...

    processed = dg.validate_run_config(stepwise, {"execution": {"config": config}})
    (executor,) = processed["execution"].values()  # keyed by the executor's name
    UserDefinedDagsterK8sConfig.from_dict(executor["step_k8s_config"])
    steps = {
        node.name
        for job in production_definitions.resolve_all_job_defs()
        for node in job.nodes_in_topological_order
    }
    for step, step_config in executor["per_step_k8s_config"].items():
        assert step in steps, f"per_step_k8s_config names no step: {step}"
        UserDefinedDagsterK8sConfig.from_dict(step_config)
        assert "nvidia.com" not in json.dumps(step_config)

    broken = {**copy.deepcopy(config), "max_concurent": 2}
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(stepwise, {"execution": {"config": broken}})
