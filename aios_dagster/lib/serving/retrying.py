"""The one retry layer of the Triton boundary: tenacity over rounds of replica failover.

One *round* sends a request to each usable replica in turn (failover) until one answers; only a
round in which every replica failed transiently is retried, after an exponential backoff with
jitter. Permanent errors (``TritonPermanentError``) leave at once from inside a round. Two
bounds apply, whichever comes first: ``max_retries`` rounds, and a total time budget per call,
sized to ride through a server restart. Nothing above this layer retries Triton calls again
(the Dagster assets have no ``RetryPolicy`` for them), so attempts do not multiply.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import tenacity

from aios_dagster.lib.serving.errors import TritonInferenceError

T = TypeVar("T")
_logger = dg.get_dagster_logger(__name__)


@dataclass(frozen=True)
class RetryBudget:
    """How hard one call tries before it reports a transient failure."""

    max_retries: int  # rounds after the first (0 = no retry)
    backoff_s: float  # first wait; doubles per round, plus up to the same again as jitter
    max_backoff_s: float  # cap of one wait (a breaker's trial time may wait longer)
    total_s: float  # no round starts later than this after the call began

    def validate(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("max_retries, retry_backoff_s and retry_max_backoff_s must be >= 0")
        if self.total_s <= 0:
            raise ValueError("retry_total_s must be > 0")


class RoundFailed(Exception):
    """No replica answered this round; retried by ``call_with_retries``, never seen by users.

    ``errors`` are the per-replica failures (empty when no replica could be tried because
    every breaker was open); ``wait_s`` asks for a longer wait than the backoff (the time until
    a breaker allows its trial request).
    """

    def __init__(self, errors: list[str], replicas: int, wait_s: float = 0.0) -> None:
        super().__init__("; ".join(errors) or "every replica's circuit breaker is open")
        self.errors = errors
        self.replicas = replicas
        self.wait_s = wait_s


class CallStopped(Exception):
    """Another part of the same call already failed: this part gives up quietly."""


def call_with_retries(
    attempt: Callable[[], T],
    budget: RetryBudget,
    *,
    started: float,
    what: str,
    give_up: Callable[[RoundFailed, int, bool], TritonInferenceError],
    stop: threading.Event | None = None,
) -> tuple[T, int]:
    """``attempt()`` retried while it raises ``RoundFailed``: (its result, retries it took).

    ``started`` (``time.monotonic``) is when the whole call began: every part of one call
    shares one time budget. When the budget or ``max_retries`` runs out, ``give_up(last round,
    retries, budget_spent)`` builds the error that is raised. ``stop`` set by another thread
    ends the wait with ``CallStopped``.
    """
    backoff = tenacity.wait_exponential_jitter(
        multiplier=budget.backoff_s, max=budget.max_backoff_s, jitter=budget.backoff_s
    )
    deadline = started + budget.total_s

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        hint = error.wait_s if isinstance(error, RoundFailed) else 0.0
        return max(float(backoff(state)), hint)

    def out_of_budget(state: tenacity.RetryCallState) -> bool:
        return time.monotonic() + state.upcoming_sleep > deadline

    def must_stop(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number > budget.max_retries or out_of_budget(state)

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise CallStopped

    def log_retry(state: tenacity.RetryCallState) -> None:
        _logger.warning(
            "%s: no Triton replica answered (%s); retry %d/%d in %.2fs",
            what,
            state.outcome.exception() if state.outcome is not None else "",
            state.attempt_number,
            budget.max_retries,
            state.upcoming_sleep,
        )

    def fail(state: tenacity.RetryCallState) -> T:
        error = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(error, RoundFailed)
        retries = state.attempt_number - 1
        spent = state.attempt_number <= budget.max_retries
        raise give_up(error, retries, spent) from error

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RoundFailed),
        wait=wait,
        stop=must_stop,
        sleep=sleep,
        before_sleep=log_retry,
        retry_error_callback=fail,
    )
    attempts = 0

    def counted() -> T:
        nonlocal attempts
        if stop is not None and stop.is_set():
            raise CallStopped
        attempts += 1
        return attempt()

    result = retrying(counted)
    return result, attempts - 1
