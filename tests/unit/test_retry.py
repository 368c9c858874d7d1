"""The shared retry policy, run on a fake clock: what is retried, how long, and what is raised."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from aios_dagster.lib.connectors.source import (
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from aios_dagster.lib.retry import RetryPolicy, RetryStats, call_with_retry


class FakeClock:
    """``sleep`` advances ``now``: the policy runs its whole schedule in no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def failing(errors: list[Exception], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """An action that raises ``errors`` in turn, then returns ``result``; counts its calls."""
    calls = [0]

    def action() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return action, calls


def transient(reason: str = "connection refused", **kw: float) -> TransientSourceError:
    return TransientSourceError("db://host", "table t", reason, **kw)


def run(action: Callable[[], str], policy: RetryPolicy, clock: FakeClock, **kw: object) -> str:
    return call_with_retry(
        action,
        policy=policy,
        source="db://host",
        what="query",
        sleep=clock.sleep,
        clock=clock.clock,
        **kw,  # type: ignore[arg-type]
    )


def test_transient_failures_are_retried_with_growing_waits_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    stats = RetryStats()
    action, calls = failing([transient(), transient(), transient()])
    policy = RetryPolicy(attempts=5, first_wait_s=1.0, max_wait_s=100, total_s=100, jitter_s=0)
    with caplog.at_level(logging.WARNING, logger="aios_dagster.lib.retry"):
        assert run(action, policy, clock, stats=stats) == "ok"
    assert calls[0] == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert (stats.attempts, stats.retries, stats.waited_s) == (4, 3, 7.0)
    assert stats.metadata() == {"retries": 3, "retry_wait_s": 7.0}
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 3
    assert all(m.startswith("db://host: query failed") for m in retries)
    assert "attempt 1 of 5" in retries[0] and "connection refused" in retries[0]


def test_jitter_stays_within_its_bound_and_waits_are_capped() -> None:
    clock = FakeClock()
    action, _ = failing([transient() for _ in range(5)])
    policy = RetryPolicy(attempts=6, first_wait_s=1.0, max_wait_s=5.0, total_s=1000, jitter_s=0.5)
    run(action, policy, clock)
    for n, wait in enumerate(clock.sleeps):
        assert min(2.0**n, 5.0) <= wait <= min(2.0**n + 0.5, 5.0)
    assert clock.sleeps[-1] == 5.0


def test_permanent_error_is_raised_at_once_unchanged() -> None:
    clock = FakeClock()
    error = PermanentSourceError("db://host", "table t", "table t does not exist")
    action, calls = failing([error])
    with pytest.raises(PermanentSourceError) as info:
        run(action, RetryPolicy(), clock)
    assert info.value is error
    assert calls[0] == 1 and clock.sleeps == []


def test_unclassified_exception_propagates_unchanged() -> None:
    """A bug (or an error the caller did not classify) is neither retried nor wrapped."""
    clock = FakeClock()
    action, calls = failing([KeyError("column")])
    with pytest.raises(KeyError):
        run(action, RetryPolicy(), clock, classify=lambda exc: None)
    assert calls[0] == 1


def test_classify_maps_driver_errors_and_chains_the_original() -> None:
    def classify(exc: Exception) -> SourceError | None:
        if isinstance(exc, PermissionError):
            return PermanentSourceError("s3://b", None, f"permission denied: {exc}")
        if isinstance(exc, OSError):
            return TransientSourceError("s3://b", None, f"storage: {exc}")
        return None

    clock = FakeClock()
    action, calls = failing([OSError("reset"), OSError("reset")])
    assert run(action, RetryPolicy(attempts=3, jitter_s=0), clock, classify=classify) == "ok"
    assert calls[0] == 3

    denied = PermissionError("nope")
    action, calls = failing([denied])
    with pytest.raises(PermanentSourceError) as info:
        run(action, RetryPolicy(), clock, classify=classify)
    assert calls[0] == 1
    assert info.value.__cause__ is denied


def test_attempts_run_out_raises_transient_naming_source_attempts_and_last_error() -> None:
    clock = FakeClock()
    action, calls = failing([transient(f"refused #{i}") for i in range(10)])
    with pytest.raises(TransientSourceError) as info:
        run(action, RetryPolicy(attempts=3, first_wait_s=0.5, jitter_s=0, total_s=100), clock)
    assert calls[0] == 3
    message = str(info.value)
    assert message.startswith("db://host [table t]: query: refused #2")
    assert "gave up after 3 attempt(s)" in message
    assert isinstance(info.value.__cause__, TransientSourceError)


def test_total_time_bounds_the_retries_before_attempts_do() -> None:
    """No attempt starts past ``total_s``: a slow failing source cannot stretch the budget."""
    clock = FakeClock()
    started = clock.now
    calls = [0]

    def slow_failure() -> str:
        calls[0] += 1
        clock.now += 4.0  # each attempt takes 4 s before it fails (a connect timeout)
        raise transient("timed out")

    policy = RetryPolicy(attempts=100, first_wait_s=1.0, max_wait_s=1.0, total_s=12, jitter_s=0)
    with pytest.raises(TransientSourceError, match="gave up after 3 attempt"):
        run(slow_failure, policy, clock)
    # attempts end at 4, 9, 14 s: a 4th would start at 15 s, past the 12 s budget
    assert calls[0] == 3
    assert clock.now - started <= policy.total_s + 4.0


def test_retry_after_hint_raises_the_wait_and_a_too_long_hint_gives_up_now() -> None:
    clock = FakeClock()
    action, calls = failing([transient("HTTP 429", retry_after=7.0)])
    policy = RetryPolicy(attempts=3, first_wait_s=0.5, max_wait_s=10, jitter_s=0)
    assert run(action, policy, clock) == "ok"
    assert clock.sleeps == [7.0] and calls[0] == 2

    clock = FakeClock()
    action, calls = failing([transient("HTTP 503", retry_after=3600.0)])
    with pytest.raises(TransientSourceError, match="retry after 3600s, over max_wait_s=10"):
        run(action, policy, clock)
    assert calls[0] == 1 and clock.sleeps == []


def test_worst_wait_is_what_callers_above_may_rely_on() -> None:
    policy = RetryPolicy(attempts=4, first_wait_s=1.0, max_wait_s=3.0, total_s=60, jitter_s=0.5)
    assert policy.worst_wait_s() == pytest.approx(1.5 + 2.5 + 3.0)
    assert RetryPolicy(attempts=50, first_wait_s=1, total_s=20).worst_wait_s() == 20
    assert RetryPolicy(attempts=1).worst_wait_s() == 0


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="total_s"):
        RetryPolicy(total_s=-1)


class Unavailable(Exception):
    """A boundary's own transient error type (not a source error)."""

    retry_after = 2.0


def test_a_boundarys_own_transient_type_is_retried_and_raised_as_it_was() -> None:
    clock = FakeClock()
    action, calls = failing([Unavailable("server restarting")])
    policy = RetryPolicy(attempts=3, first_wait_s=0.5, jitter_s=0)
    assert run(action, policy, clock, transient=(Unavailable,)) == "ok"
    assert calls[0] == 2 and clock.sleeps == [2.0]  # its retry_after hint is honoured

    error = Unavailable("still down")
    action, calls = failing([error, Unavailable("down"), Unavailable("down")])
    with pytest.raises(Unavailable) as info:
        run(action, policy, clock, transient=(Unavailable,))
    assert calls[0] == 3
    assert any("db://host: query: gave up after 3 attempt(s)" in n for n in info.value.__notes__)

    action, calls = failing([ValueError("bad input")])
    with pytest.raises(ValueError):
        run(action, policy, clock, transient=(Unavailable,))
    assert calls[0] == 1
