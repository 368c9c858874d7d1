"""Triton's health as the Dagster UI shows it, against real servers: up, down, and back.

The sensor is evaluated the way the daemon does (``build_sensor_context`` with the resource),
so what is asserted is what lands in the UI: the tick's skip reason and the asset check
evaluations it records on the published model asset.
"""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.serving.health import (
    CHECK_NAME,
    build_served_by_triton_check,
    build_triton_health_sensor,
    probe_triton,
)
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.settings import Settings
from tests.triton_fixtures import PublishFn, ServerFactory

PUBLISHED = dg.AssetKey("health_model_published")


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def tick(
    sensor: dg.SensorDefinition, triton: TritonResource, cursor: str | None = None
) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"triton": triton})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def reason(result: dg.SensorResult) -> str:
    """The tick's text in the UI (a sensor that never launches runs always skips)."""
    return str(result.skip_reason.skip_message if result.skip_reason else "")


def evaluations(result: dg.SensorResult) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.asset_events or [] if isinstance(e, dg.AssetCheckEvaluation)]


def test_down_server_is_reported_in_the_tick_and_fails_the_check() -> None:
    url = dead_url()
    triton = TritonResource(url=url)
    sensor = build_triton_health_sensor({"health_model": PUBLISHED}, timeout_s=1.0)
    result = tick(sensor, triton)
    assert not result.run_requests
    assert reason(result).startswith(f"Triton DOWN at {url}")
    (evaluation,) = evaluations(result)
    assert evaluation.asset_key == PUBLISHED and evaluation.check_name == CHECK_NAME
    assert not evaluation.passed
    assert "Triton is down" in (evaluation.description or "")

    check = build_served_by_triton_check(PUBLISHED, "health_model", timeout_s=1.0)
    outcome = dg.Definitions(
        asset_checks=[check], resources={"triton": triton}
    ).resolve_implicit_global_asset_job_def()
    run = outcome.execute_in_process(raise_on_error=False)
    (check_eval,) = run.get_asset_check_evaluations()
    assert not check_eval.passed
    assert "cannot be served: Triton is down" in (check_eval.description or "")


def test_health_follows_a_server_that_dies_and_comes_back(
    tmp_path: Path, publish_random_model: PublishFn, triton_server_factory: ServerFactory
) -> None:
    repository = tmp_path / "repository"
    publish_random_model(repository=repository, model_name="health_model", n_features=8)
    server = triton_server_factory(repository)
    triton = TritonResource(url=server.grpc_url, retry_backoff_s=0.05)
    sensor = build_triton_health_sensor({"health_model": PUBLISHED}, timeout_s=1.0)

    up = tick(sensor, triton)
    assert reason(up).startswith(f"Triton ready at {server.grpc_url}; models ready: health_model")
    (first,) = evaluations(up)
    assert first.passed

    still_up = tick(sensor, triton, up.cursor)
    assert evaluations(still_up) == [], "an unchanged state must not add check evaluations"

    server.kill()
    down = tick(sensor, triton, still_up.cursor)
    assert reason(down).startswith("Triton DOWN")
    (failed,) = evaluations(down)
    assert not failed.passed

    server.start()
    back = tick(sensor, triton, down.cursor)
    (passed,) = evaluations(back)
    assert passed.passed
    assert probe_triton(triton, 2.0).model_ready("health_model")


def test_unloaded_model_fails_its_check_while_the_server_is_up(
    triton_resource: TritonResource,
) -> None:
    sensor = build_triton_health_sensor({"never_published": PUBLISHED}, timeout_s=1.0)
    result = tick(sensor, triton_resource)
    assert reason(result).startswith("Triton ready")
    (evaluation,) = evaluations(result)
    assert not evaluation.passed
    assert "not in the model repository" in (evaluation.description or "")


def test_code_location_has_the_sensor_and_a_check_per_published_model(tmp_path: Path) -> None:
    defs = build_definitions(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)}))
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("triton_health_sensor") is not None
    checks = defs.resolve_asset_graph().asset_check_keys
    assert dg.AssetCheckKey(dg.AssetKey("email_router_published"), CHECK_NAME) in checks
