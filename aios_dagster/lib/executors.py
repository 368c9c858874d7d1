"""The executor every job runs its steps with, chosen by ``AIOS_EXECUTOR``.

Dagster's multiprocess executor starts each step in a fresh process that imports the code
location from scratch (Dagster, dbt, pandas, scipy, Evidently): most of a short step's time.
``multiprocess`` here is that executor with the ``forkserver`` start method preloading this
package, so the imports happen once per run and each step forks from a warm process; the steps
still run isolated and in parallel (``bench/executor.py`` measures the difference).
``spawn`` is Dagster's default (a fresh interpreter per step), the fallback should a library
ever misbehave after a fork. ``in_process`` runs the steps one after another in the run worker,
for a small machine where even forks cost too much memory. Jobs that set their own executor (the
latency-bound micro-batch job) keep it.
"""

from __future__ import annotations

import dagster as dg

PRELOAD = ["aios_dagster.definitions"]
"""What the forkserver imports before forking steps: the code location's module (importing it
builds nothing; the definitions are built lazily in each step)."""

EXECUTORS = ("multiprocess", "spawn", "in_process")


def executor_for(name: str) -> dg.ExecutorDefinition:
    """The executor definition ``AIOS_EXECUTOR=name`` asks for."""
    if name == "multiprocess":
        return dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": PRELOAD}}},
            name="multiprocess_forkserver",
        )
    if name == "spawn":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    raise ValueError(f"AIOS_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")
