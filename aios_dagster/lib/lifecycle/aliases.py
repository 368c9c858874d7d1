"""Alias moves whose history cannot lie, and the questions MLflow cannot answer from it.

Order of writes for every move: an *intent* row, then MLflow's alias, then an *outcome* row.
The history reads only applied events, so a crash before the MLflow write leaves an intent
that the next alias operation marks abandoned (the alias did not move), and a crash after it
leaves one that is marked applied, because MLflow shows it happened. Recording after the
MLflow write instead would lose who and why in that crash; recording before it without an
outcome would let the history claim a change that never happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aios_dagster.lib.lifecycle.governance import ABANDONED, APPLIED, AliasEvent

if TYPE_CHECKING:
    from aios_dagster.lib.lifecycle.registry import ModelRegistry


def move_alias(
    registry: ModelRegistry,
    name: str,
    alias: str,
    version: int | None,
    *,
    actor: str,
    reason: str,
) -> AliasEvent:
    """Point ``alias`` at ``version`` (None: remove it), recorded; one move at a time."""
    audit = registry.audit
    with audit.alias_lock(name, alias):
        settle(registry, name, alias)
        previous = registry.get_alias(name, alias)
        event = audit.record_intent(name, alias, version, previous, actor=actor, reason=reason)
        try:
            if version is None:
                registry.client.delete_registered_model_alias(name, alias)
            else:
                registry.client.set_registered_model_alias(name, alias, str(version))
        except Exception:
            if registry.get_alias(name, alias) == previous:
                audit.record_outcome(event.id, ABANDONED)
            raise
        audit.record_outcome(event.id, APPLIED)
        return event


def settle(registry: ModelRegistry, name: str, alias: str) -> None:
    """Give every unsettled intent its outcome, and record changes made outside us.

    Call with the alias lock held. MLflow's current alias decides: an intent it shows was
    applied; any other was abandoned. If MLflow then still disagrees with the history
    (someone moved the alias in the MLflow UI), that change is recorded as ``external``.
    """
    audit = registry.audit
    current = registry.get_alias(name, alias)
    events = audit.events(name, alias)
    last_settled = max((i for i, (_, o) in enumerate(events) if o is not None), default=-1)
    pending = [e for e, outcome in events[last_settled + 1 :] if outcome is None]
    for i, event in enumerate(pending):
        applied = i == len(pending) - 1 and event.version == current
        audit.record_outcome(event.id, APPLIED if applied else ABANDONED)
    history = audit.history(name, alias)
    recorded = history[-1].version if history else None
    if current != recorded:
        audit.record_external(name, alias, current, recorded)


def settle_all(registry: ModelRegistry, name: str) -> None:
    """``settle`` every alias the model has now or ever had."""
    for alias in sorted(registry.audit.aliases_recorded(name) | set(registry.aliases(name))):
        with registry.audit.alias_lock(name, alias):
            settle(registry, name, alias)


def version_at(history: list[AliasEvent], when: datetime) -> int | None:
    """The version an alias pointed to at ``when``, from its applied events (oldest first)."""
    if when.tzinfo is None:
        raise ValueError(
            f"version_at needs a timezone-aware time, got {when.isoformat()} "
            "(history is recorded in UTC; pass e.g. datetime(..., tzinfo=UTC))"
        )
    current: int | None = None
    for event in history:
        if event.at > when:
            break
        current = event.version
    return current


def champion_stack(history: list[AliasEvent]) -> list[int]:
    """Champions in order of tenure, with rollbacks taken off.

    Going back to the champion just before the current one counts as a rollback and pops the
    current one, so repeated rollbacks walk further back instead of toggling between the last
    two versions (where a second "rollback" would re-serve the version just rolled back).
    Removals of the alias are skipped: a later champion follows the one before the gap.
    """
    stack: list[int] = []
    for event in history:
        if event.version is None:
            continue
        if len(stack) >= 2 and stack[-2] == event.version:
            stack.pop()
        elif not stack or stack[-1] != event.version:
            stack.append(event.version)
    return stack
