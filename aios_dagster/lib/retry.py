"""The one retry policy for I/O boundaries: retry what the caller calls transient, nothing else.

Retries stacked at several layers multiply (a reader's loop under a step's ``RetryPolicy`` under a
sensor's next tick), and a permanent error retried is minutes spent reporting what could never
succeed. So each boundary (a database, an HTTP API, a bus, object storage, an inference server)
retries once, here, and only what its caller classified as transient:

* ``TransientSourceError`` raised by the action (or an exception ``classify`` maps to one, or
  one of the boundary's own ``transient`` types) is retried with exponential backoff plus
  jitter, so many workers do not retry in lockstep. A server's ``retry_after`` hint raises the
  wait; a hint longer than ``max_wait_s`` gives up at once, because honouring it would stall
  the run longer than the policy allows.
* ``PermanentSourceError`` is raised at once, unchanged. Any other exception is a bug, not a
  source failure, and propagates unchanged too.
* Attempts and total time are both bounded: no attempt starts after ``total_s`` from the first,
  so the worst case of one call is ``total_s`` plus the duration of one attempt (bounded by the
  boundary's own timeout). Callers above rely on that and do not retry again.
* When the budget runs out the last transient error is raised again as ``TransientSourceError``,
  saying how many attempts over how long: the run fails and the next run resumes from its
  durable cursor.

Each retry is logged with the source's name and counted in a ``RetryStats`` for run metadata (a
run that needed forty retries otherwise looks exactly like one that needed none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import tenacity

from aios_dagster.lib.connectors.source import (
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)

T = TypeVar("T")

_log = logging.getLogger(__name__)


class RetryLog(Protocol):
    """What a retry is logged to: a ``logging.Logger`` or Dagster's ``context.log``."""

    def warning(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one boundary tries before it reports a transient failure.

    ``attempts`` counts the first try. The wait before retry *n* (1-based) is
    ``first_wait_s * 2**(n-1)`` plus up to ``jitter_s`` (default: ``first_wait_s``), capped at
    ``max_wait_s``.
    """

    attempts: int = 4
    first_wait_s: float = 0.5
    max_wait_s: float = 30.0
    total_s: float = 60.0
    jitter_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        for name in ("first_wait_s", "max_wait_s", "total_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"retry {name} must not be negative, got {getattr(self, name)}")

    @property
    def jitter(self) -> float:
        return self.first_wait_s if self.jitter_s is None else self.jitter_s

    def worst_wait_s(self) -> float:
        """The longest this policy can spend sleeping between attempts of one call."""
        waits = sum(
            min(self.first_wait_s * 2**n + self.jitter, self.max_wait_s)
            for n in range(self.attempts - 1)
        )
        return min(waits, self.total_s)

    def describe(self) -> str:
        return f"at most {self.attempts} attempt(s) within {self.total_s:g}s"


@dataclass
class RetryStats:
    """Counters across every call that shares this object (one reader, one run)."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    waited_s: float = 0.0
    gave_up: int = 0

    def metadata(self) -> dict[str, int | float]:
        """For a run's materialization metadata."""
        return {"retries": self.retries, "retry_wait_s": round(self.waited_s, 3)}


def call_with_retry(
    action: Callable[[], T],
    *,
    policy: RetryPolicy,
    source: str,
    what: str,
    classify: Callable[[Exception], SourceError | None] | None = None,
    transient: tuple[type[Exception], ...] = (TransientSourceError,),
    stats: RetryStats | None = None,
    log: RetryLog | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``action()``, retried under ``policy`` while it fails with a transient source error.

    ``classify`` maps an exception the action raised (a driver's, an ``OSError``) to a
    ``TransientSourceError`` or ``PermanentSourceError`` (chained to the original), or to
    ``None`` to let it propagate unchanged. ``transient`` widens what is retried for a boundary
    with its own error types (an inference client's "unavailable"); such an error, once the
    budget is spent, is raised as it was with a note saying how long was tried.
    ``source`` and ``what`` name the boundary in logs
    and in the give-up message (``"s3://bucket/in"``, ``"listing"``). ``sleep`` and ``clock``
    are injectable so tests run the policy without waiting.
    """
    stats = stats if stats is not None else RetryStats()
    log = log if log is not None else _log
    stats.calls += 1
    backoff = tenacity.wait_exponential_jitter(
        multiplier=policy.first_wait_s, max=policy.max_wait_s, jitter=policy.jitter
    )
    started = clock()

    def attempt() -> T:
        stats.attempts += 1
        try:
            return action()
        except (SourceError, *transient):
            raise
        except Exception as exc:
            mapped = classify(exc) if classify is not None else None
            if mapped is None:
                raise
            raise mapped from exc

    def wait(state: tenacity.RetryCallState) -> float:
        delay = float(backoff(state))
        hint = _retry_after(state)
        return delay if hint is None else max(delay, hint)

    def stop(state: tenacity.RetryCallState) -> bool:
        hint = _retry_after(state)
        return (
            state.attempt_number >= policy.attempts
            or (hint is not None and hint > policy.max_wait_s)
            or clock() - started + state.upcoming_sleep > policy.total_s
        )

    def before_sleep(state: tenacity.RetryCallState) -> None:
        stats.retries += 1
        stats.waited_s += state.upcoming_sleep
        log.warning(
            "%s: %s failed (attempt %d of %d), retrying in %.2fs: %s",
            source,
            what,
            state.attempt_number,
            policy.attempts,
            state.upcoming_sleep,
            _reason(_last_error(state)),
        )

    def give_up(state: tenacity.RetryCallState) -> T:
        stats.gave_up += 1
        last = _last_error(state)
        assert isinstance(last, Exception)
        hint = _retry_after(state)
        if hint is not None and hint > policy.max_wait_s:
            limit = policy.max_wait_s
            why = f"the source asks to retry after {hint:.0f}s, over max_wait_s={limit:g}"
        else:
            why = f"gave up after {state.attempt_number} attempt(s) in {clock() - started:.1f}s"
        if isinstance(last, TransientSourceError):
            raise TransientSourceError(
                last.source, last.record, f"{what}: {last.reason} ({why})"
            ) from last
        last.add_note(f"{source}: {what}: {why}")
        raise last

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception_type(transient),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        sleep=sleep,
    )
    return retrying(attempt)


def _last_error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _reason(exc: BaseException | None) -> str:
    """The error without the source prefix: the log line already starts with the source."""
    return exc.reason if isinstance(exc, SourceError) else str(exc)


def _retry_after(state: tenacity.RetryCallState) -> float | None:
    hint = getattr(_last_error(state), "retry_after", None)
    return float(hint) if isinstance(hint, int | float) else None


__all__ = [
    "PermanentSourceError",
    "RetryPolicy",
    "RetryStats",
    "TransientSourceError",
    "call_with_retry",
]
