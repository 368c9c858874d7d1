"""Alias history and approvals on a real embedded MLflow store: the audit MLflow lacks."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from aios_dagster.lib.lifecycle.governance import APPEND_ONLY, EXTERNAL_ACTOR
from aios_dagster.lib.lifecycle.registry import ApprovalError, ModelRegistry, RegistryError
from tests.lifecycle.registry_support import fresh_registry, register


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return fresh_registry(tmp_path)


def _champions(registry: ModelRegistry, versions: list[int]) -> list[datetime]:
    """Make each version champion in turn; return the time just after each change."""
    after = []
    for v in versions:
        registry.set_alias("router", "champion", v, actor="ann", reason=f"promote v{v}")
        after.append(datetime.now(UTC))
    return after


def test_which_version_was_champion_at_time_t(registry: ModelRegistry):
    """MLflow #2169: the registry answers for any past time, not just now."""
    for seed in (1, 2, 3):
        register(registry, seed)
    before = datetime.now(UTC)
    t1, t2, t3 = _champions(registry, [1, 2, 3])
    assert registry.version_at("router", "champion", before - timedelta(seconds=1)) is None
    assert registry.version_at("router", "champion", t1) == 1
    assert registry.version_at("router", "champion", t2) == 2
    assert registry.version_at("router", "champion", t3) == 3
    assert registry.get_alias("router", "champion") == 3
    history = registry.alias_history("router", "champion")
    assert [(e.previous_version, e.version) for e in history] == [(None, 1), (1, 2), (2, 3)]
    assert all(e.actor == "ann" and e.source == "registry" for e in history)
    assert history[1].reason == "promote v2"
    assert history[0].at <= t1 <= history[1].at <= t2
    with pytest.raises(ValueError, match="timezone-aware"):
        registry.version_at("router", "champion", datetime(2026, 1, 1))


def test_rollback_walks_back_instead_of_toggling(registry: ModelRegistry):
    """MLflow #6180: the previous champion, and after a rollback the one before it."""
    for seed in (1, 2, 3):
        register(registry, seed)
    assert registry.previous_champion("router") is None
    _champions(registry, [1, 2, 3])
    assert registry.previous_champion("router") == 2
    registry.set_alias("router", "champion", 2, actor="ops", reason="rollback: v3 misroutes")
    assert registry.previous_champion("router") == 1  # not 3, the version just rolled back
    registry.set_alias("router", "champion", 1, actor="ops", reason="rollback again")
    assert registry.previous_champion("router") is None


def test_clearing_an_alias_is_recorded(registry: ModelRegistry):
    register(registry, 1)
    registry.set_alias("router", "challenger", 1, actor="ann", reason="shadow")
    t = datetime.now(UTC)
    event = registry.clear_alias("router", "challenger", actor="ann", reason="promoted")
    assert event is not None and (event.previous_version, event.version) == (1, None)
    assert registry.get_alias("router", "challenger") is None
    assert registry.clear_alias("router", "challenger", actor="ann", reason="again") is None
    assert registry.version_at("router", "challenger", t) == 1
    assert registry.version_at("router", "challenger", datetime.now(UTC)) is None
    assert [e.version for e in registry.alias_history("router")] == [1, None]


def test_crash_before_the_mlflow_write_leaves_no_false_history(registry: ModelRegistry):
    register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    # A process records its intent to make v2 champion, then dies before MLflow is told.
    registry.audit.record_intent("router", "champion", 2, 1, actor="bob", reason="crashed")
    assert [e.version for e in registry.alias_history("router", "champion")] == [1]
    assert registry.version_at("router", "champion", datetime.now(UTC)) == 1
    outcomes = [o for _, o in registry.audit.events("router", "champion")]
    assert outcomes == ["applied", "abandoned"]


def test_crash_after_the_mlflow_write_keeps_who_and_why(registry: ModelRegistry):
    register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    # Intent recorded and MLflow changed, then the process dies before the outcome row.
    registry.audit.record_intent("router", "champion", 2, 1, actor="bob", reason="better")
    registry.client.set_registered_model_alias("router", "champion", "2")
    history = registry.alias_history("router", "champion")
    assert [(e.version, e.actor, e.reason) for e in history][-1] == (2, "bob", "better")
    assert registry.previous_champion("router") == 1


def test_a_change_made_in_the_mlflow_ui_is_recorded_as_external(registry: ModelRegistry):
    register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    registry.client.set_registered_model_alias("router", "champion", "2")  # not through us
    last = registry.alias_history("router", "champion")[-1]
    assert (last.previous_version, last.version, last.source) == (1, 2, "external")
    assert last.actor == EXTERNAL_ACTOR
    # Recorded once, not again on every read.
    assert len(registry.alias_history("router", "champion")) == 2


def test_concurrent_alias_changes_chain_their_previous_versions(registry: ModelRegistry):
    for seed in (1, 2):
        register(registry, seed)
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        try:
            for _ in range(4):
                registry.set_alias("router", "champion", version, actor="t", reason="race")
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    history = registry.alias_history("router", "champion")
    assert len(history) == 8
    for before, after in itertools.pairwise(history):
        assert after.previous_version == before.version
    assert history[-1].version == registry.get_alias("router", "champion")


def test_the_audit_tables_refuse_update_and_delete(registry: ModelRegistry):
    register(registry, 1)
    registry.set_alias("router", "champion", 1, actor="ann", reason="first")
    registry.record_decision("router", 1, "approved", actor="ann", reason="fine")
    statements = [f"update {t} set recorded_at = recorded_at" for t in APPEND_ONLY]
    statements += [f"delete from {t}" for t in APPEND_ONLY]
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # noqa: SIM117
            with registry.audit.engine.begin() as conn:
                conn.exec_driver_sql(statement)
    assert len(registry.alias_history("router")) == 1
    assert registry.approval("router", 1) is not None


def test_approval_is_logged_and_mirrored_on_the_mlflow_version(registry: ModelRegistry):
    register(registry, 1)
    with pytest.raises(ApprovalError, match="needs a person's approval"):
        registry.require_approved("router", 1)
    approval = registry.record_decision(
        "router", 1, "approved", actor="risk-officer", reason="shadow agreement 97%"
    )
    assert registry.require_approved("router", 1) == approval
    assert registry.approval("router", 1) == approval
    tags = registry.version_tags("router", 1)
    assert tags["approval_status"] == "approved"
    assert tags["approved_by"] == "risk-officer"
    assert tags["approval_reason"] == "shadow agreement 97%"
    assert datetime.fromisoformat(tags["approved_at"]) == approval.at


def test_a_rejected_version_is_never_promotable(registry: ModelRegistry):
    register(registry, 1)
    registry.record_decision("router", 1, "approved", actor="ann", reason="looked fine")
    registry.record_decision("router", 1, "rejected", actor="bob", reason="biased on vip")
    with pytest.raises(ApprovalError, match=r"rejected by bob \(biased on vip\); it can never"):
        registry.require_approved("router", 1)
    with pytest.raises(ApprovalError, match="a rejected version cannot be approved"):
        registry.record_decision("router", 1, "approved", actor="ann", reason="please")
    assert [a.decision for a in registry.approvals("router", 1)] == ["approved", "rejected"]
    assert registry.version_tags("router", 1)["approval_status"] == "rejected"


def test_decisions_need_a_version_a_reason_and_a_known_verdict(registry: ModelRegistry):
    register(registry, 1)
    with pytest.raises(RegistryError, match="router v5 does not exist"):
        registry.record_decision("router", 5, "approved", actor="ann", reason="ok")
    with pytest.raises(ValueError, match="reason must not be empty"):
        registry.record_decision("router", 1, "approved", actor="ann", reason="  ")
    with pytest.raises(ValueError, match="decision must be one of"):
        registry.record_decision("router", 1, "maybe", actor="ann", reason="hm")
    with pytest.raises(ValueError, match="actor must not be empty"):
        registry.set_alias("router", "champion", 1, actor="", reason="x")
    with pytest.raises(RegistryError, match="router v9 does not exist"):
        registry.set_alias("router", "champion", 9, actor="ann", reason="x")
    assert registry.approvals("router", 1) == []
    assert registry.alias_history("router") == []
