"""The code location loads, with exactly the graph we intend, and loading has no side effects."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from aios_dagster.definitions import build_definitions
from aios_dagster.settings import Settings

EXPECTED_ASSETS = {
    "raw_emails",
    "raw_customers",
    "raw_transactions",
    "raw_routing_labels",
    "email_text_features",
    "stg_emails",
    "stg_email_text",
    "stg_customers",
    "stg_transactions",
    "stg_routing_labels",
    "email_features",
    "training_set",
    "email_router_candidate",
    "email_router_evaluation",
    "email_router_published",
    "email_router_predictions",
    "email_router_shadow_predictions",
    "email_router_shadow_comparison",
    "email_router_microbatch",
    "email_router_routed_tickets",
    "email_router_review_queue",
    "email_router_feature_drift",
    "email_router_prediction_drift",
    "email_router_quality",
    "customer_online_features",
    "email_triage_live",
}
EXPECTED_CHECKS = {
    "email_triage_live:email_triage_live_reconciliation",
    "email_triage_live:email_triage_live_lag",
    "raw_emails:emails_contract",
    "raw_customers:customers_contract",
    "raw_transactions:transactions_contract",
    "raw_routing_labels:routing_labels_contract",
    "email_router_evaluation:gate",
    "email_router_published:served_by_triton",
    "email_router_feature_drift:drift_within_threshold",
    "email_router_prediction_drift:drift_within_threshold",
    "email_router_quality:quality_above_floor",
    "email_features:unique_email_features_email_id",
    "email_features:not_null_email_features_email_id",
    "email_features:not_null_email_features_received_at",
    "email_features:not_null_email_features_text_vec",
    "email_features:accepted_values_email_features_segment__retail__premier__business__unknown",
    "stg_customers:not_null_stg_customers_customer_id",
    "stg_email_text:not_null_stg_email_text_email_id",
    "stg_email_text:unique_stg_email_text_email_id",
    "stg_customers:unique_stg_customers_customer_id",
    "stg_customers:unique_stg_customers_email_token",
    "stg_emails:not_null_stg_emails_email_id",
    "stg_emails:unique_stg_emails_email_id",
    "stg_transactions:not_null_stg_transactions_txn_id",
    "stg_transactions:unique_stg_transactions_txn_id",
    "training_set:accepted_values_training_set_priority__P1__P2__P3",
    "training_set:not_null_training_set_email_id",
    "training_set:not_null_training_set_queue",
    "training_set:unique_training_set_email_id",
}


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    data = tmp_path_factory.mktemp("defs") / "data"
    return build_definitions(Settings.from_env({"AIOS_DATA_DIR": str(data)}))


def test_asset_graph_is_the_intended_flow(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    assert {k.to_user_string() for k in graph.asset_check_keys} == EXPECTED_CHECKS
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["stg_emails"] == {"raw_emails"}
    assert parents["email_features"] == {
        "stg_emails",
        "stg_customers",
        "stg_transactions",
        "stg_email_text",
    }
    assert parents["stg_email_text"] == {"email_text_features"}
    assert parents["customer_online_features"] == {"stg_customers", "stg_transactions"}
    assert parents["email_triage_live"] == {"raw_emails"}
    assert parents["email_router_predictions"] == {"email_features", "email_router_published"}
    assert parents["email_router_evaluation"] == {"email_router_candidate"}
    assert parents["email_router_published"] == {"email_router_evaluation"}
    assert parents["email_router_shadow_predictions"] == parents["email_router_predictions"]
    assert parents["email_router_feature_drift"] == {"email_features"}
    assert parents["email_router_prediction_drift"] == {"email_router_predictions"}
    assert parents["email_router_quality"] == {"email_router_predictions", "training_set"}
    assert parents["email_router_shadow_comparison"] == {
        "email_router_predictions",
        "email_router_shadow_predictions",
    }


def test_assets_are_grouped_by_layer(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["raw_emails"] == "ingest"
    assert groups["email_features"] == groups["stg_emails"] == "features"
    assert groups["email_router_published"] == "models"
    assert groups["email_router_predictions"] == "inference"
    assert groups["email_router_feature_drift"] == "monitoring"


def test_contract_and_gate_checks_block_downstream(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        if key.name.endswith("_contract") or key.name == "gate":
            assert spec.blocking, key


def test_lifecycle_jobs_take_who_and_why(defs: dg.Definitions) -> None:
    for action in ("promote", "rollback", "review"):
        job = defs.resolve_job_def(f"email_router_{action}")
        fields = job.run_config_schema.config_type.fields["ops"].config_type.fields
        op_config = fields[f"email_router_{action}_op"].config_type.fields["config"]
        assert {"actor", "reason"} <= set(op_config.config_type.fields), action


def test_jobs_schedules_sensors(defs: dg.Definitions) -> None:
    assert defs.resolve_job_def("triage_job").partitions_def is not None
    assert defs.resolve_job_def("mail_refresh_job") is not None
    scoring = defs.resolve_job_def("scoring_job")
    assert scoring.partitions_def is not None
    assert {k.to_user_string() for k in scoring.asset_layer.executable_asset_keys} == {
        "email_router_predictions",
        "email_router_shadow_predictions",
        "email_router_shadow_comparison",
        "email_router_routed_tickets",
        "email_router_review_queue",
    }
    assert sorted(s.name for s in defs.schedules or []) == [
        "email_triage_live_checks_schedule",
        "raw_transactions_schedule",
        "triage_job_schedule",
    ]
    # The handler's checks run in their own job, never in the batch jobs.
    checks = defs.resolve_job_def("email_triage_live_checks_job")
    assert {k.name for k in checks.asset_layer.asset_graph.asset_check_keys} >= {
        "email_triage_live_reconciliation",
        "email_triage_live_lag",
    }
    for batch in ("triage_job", "scoring_job", "mail_refresh_job"):
        selected = defs.resolve_job_def(batch).asset_layer.asset_graph.asset_check_keys
        assert not {k for k in selected if k.asset_key == dg.AssetKey("email_triage_live")}
    assert sorted(s.name for s in defs.sensors or []) == [
        "email_router_drift_retrain",
        "raw_customers_sensor",
        "raw_emails_sensor",
        "run_traces_failed",
        "run_traces_succeeded",
        "triton_health_sensor",
    ]
    # New mail goes straight to micro-batch scoring; its job lands, featurises and scores.
    assert defs.resolve_sensor_def("raw_emails_sensor").job_name == "microbatch_job"
    microbatch = defs.resolve_job_def("microbatch_job")
    selected = {k.to_user_string() for k in microbatch.asset_layer.executable_asset_keys}
    assert {"raw_emails", "email_features", "email_router_microbatch"} <= selected
    assert not selected & {"email_router_candidate", "email_router_published", "training_set"}
    assert not selected & {"raw_customers", "raw_transactions"}  # they have their own triggers
    triage = defs.resolve_job_def("triage_job").asset_layer.executable_asset_keys
    assert dg.AssetKey("email_router_microbatch") not in triage  # could run before publishing
    # A failed feature-drift check retrains into shadow: train, evaluate (gate), publish only.
    assert defs.resolve_sensor_def("email_router_drift_retrain").job_name == "email_router_retrain"
    retrain = defs.resolve_job_def("email_router_retrain").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in retrain} == {
        "email_router_candidate",
        "email_router_evaluation",
        "email_router_published",
    }


def test_connectors_are_declared_in_yaml_with_kinds_and_owners(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    expected = {
        "raw_emails": ("mailbox", "team:data-platform"),
        "raw_customers": ("files", "team:data-platform"),
        "raw_transactions": ("sql", "team:data-platform"),
        "raw_routing_labels": ("files", "team:support-ops"),
    }
    for name, (kind, owner) in expected.items():
        node = graph.get(dg.AssetKey(name))
        assert {kind, "parquet"} <= set(node.kinds), name
        assert owner in node.owners, name
        # says where it is declared
        assert f"defs/ingest/{name}/defs.yaml" in (node.description or ""), name


def test_optional_connectors_appear_only_when_their_system_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    monkeypatch.delenv("AIOS_NATS_URL", raising=False)
    monkeypatch.delenv("AIOS_HELPDESK_URL", raising=False)
    plain = {
        k.to_user_string()
        for k in build_definitions(settings).resolve_asset_graph().get_all_asset_keys()
    }
    assert "raw_card_events" not in plain and "raw_helpdesk_tickets" not in plain
    monkeypatch.setenv("AIOS_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("AIOS_HELPDESK_URL", "http://127.0.0.1:9/v1/tickets")
    full = build_definitions(settings)
    keys = {k.to_user_string() for k in full.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_card_events", "raw_helpdesk_tickets"} <= keys
    assert full.resolve_sensor_def("raw_card_events_sensor") is not None


def test_importing_definitions_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = "import aios_dagster.definitions as d; d.defs"
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"AIOS_DATA_DIR": str(data), "PATH": ""},
        cwd=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []


def test_a_second_model_is_yaml_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another folder with a model ``defs.yaml`` adds that model's whole lifecycle, no Python."""
    import yaml

    packaged = Path(__file__).resolve().parents[2] / "aios_dagster/defs/models/email_router"
    doc = yaml.safe_load((packaged / "defs.yaml").read_text())
    lite = doc["attributes"]
    lite["name"] = lite["triton_model"] = "email_router_lite"
    lite["inputs"] = {"numeric": ["tenure_years", "txn_count_30d"], "vectors": ["text_vec"]}
    lite["policy"] = {**lite["policy"], "name": "lite-v1", "min_confidence": 0.7}
    lite["gate"] = {**lite["gate"], "segments": []}  # its inputs have no segment flags
    package = tmp_path / "extra_models"
    (package / "defs" / "email_router_lite").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "defs" / "email_router_lite" / "defs.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    loaded = dg.load_defs(importlib.import_module("extra_models.defs"), project_root=tmp_path)
    # only one Definitions may carry a component tree: take the loaded objects
    extra = dg.Definitions(assets=loaded.assets, asset_checks=loaded.asset_checks, jobs=loaded.jobs)
    base = build_definitions(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")}))
    defs = dg.Definitions.merge(base, extra)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    suffixes = ("candidate", "evaluation", "published", "predictions", "shadow_predictions")
    monitoring = ("feature_drift", "prediction_drift", "quality")
    for suffix in (*suffixes, "shadow_comparison", "microbatch", *monitoring):
        assert {f"email_router_{suffix}", f"email_router_lite_{suffix}"} <= keys
    checks = {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys}
    assert "email_router_lite_evaluation:gate" in checks
    for action in ("promote", "rollback", "review", "retrain"):
        assert defs.resolve_job_def(f"email_router_lite_{action}") is not None
    microbatch = defs.resolve_job_def("microbatch_job").asset_layer.executable_asset_keys
    assert dg.AssetKey("email_router_lite_microbatch") in microbatch
