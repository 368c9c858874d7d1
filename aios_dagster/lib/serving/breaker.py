"""Per-replica circuit breakers plus the round-robin cursor that spreads requests over them.

A replica that failed ``threshold`` times in a row (transiently) is skipped for ``reset_s``;
then exactly one caller sends a trial request (half-open) whose verdict closes or reopens it.
Pure logic with an injectable clock: no network, so it is unit-tested on its own.

State lives in one instance (``TritonResource`` keeps one per resource instance, so it spans
the calls of one run and never leaks between runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import dagster as dg

BreakerState = Literal["closed", "open", "half_open"]
_logger = dg.get_dagster_logger(__name__)


@dataclass(frozen=True)
class ReplicaHealth:
    """Read-only snapshot of one replica's circuit breaker (for tests and asset metadata)."""

    url: str
    state: BreakerState
    consecutive_failures: int
    retry_in_s: float | None  # seconds until a trial request is allowed; None unless open
    requests: int  # requests sent to it by this resource instance
    transient_failures: int  # of which failed transiently
    last_error: str


@dataclass
class _Replica:
    url: str
    consecutive_failures: int = 0
    opened_at: float | None = None  # when the breaker (re)opened; None = closed
    open_since: float | None = None  # when it went from closed to open (trials keep it)
    trial_in_flight: bool = False
    requests: int = 0
    transient_failures: int = 0
    last_error: str = ""


class ReplicaBoard:
    """Circuit breakers of a set of replicas, shared by all threads of a resource instance.

    The policy (``threshold``, ``reset_s``) is passed to each call rather than stored, because
    the resource that owns the board is a frozen config object that creates it before its own
    fields are known to a factory.

    One ``threading.Condition`` guards everything: the state is tiny and every operation is
    O(replicas), so a single lock is simpler than per-replica locks and never contended for
    long. Threads that find only a half-open replica whose trial is still in flight wait on
    the condition for the trial's verdict instead of failing or busy-looping.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._replicas: dict[str, _Replica] = {}
        self._cursor = 0

    def _get(self, url: str) -> _Replica:
        replica = self._replicas.get(url)
        if replica is None:
            replica = self._replicas[url] = _Replica(url)
        return replica

    def acquire(
        self, urls: list[str], exclude: set[str], reset_s: float, wait_s: float = 0.0
    ) -> str | None:
        """The next usable replica not in ``exclude`` (round-robin), or None if all are open.

        A closed replica is usable; an open one whose reset time has passed is usable by
        exactly one caller (the half-open trial). Waits up to ``wait_s`` while the only
        candidates are half-open replicas whose trial is still running.
        """
        deadline = self._clock() + wait_s
        with self._cond:
            while True:
                now = self._clock()
                pending = False
                n = len(urls)
                for step in range(n):
                    url = urls[(self._cursor + step) % n]
                    if url in exclude:
                        continue
                    replica = self._get(url)
                    if replica.opened_at is not None:
                        if replica.trial_in_flight:
                            pending = True
                            continue
                        if now < replica.opened_at + reset_s:
                            continue
                        replica.trial_in_flight = True  # half-open: this caller is the trial
                    self._cursor = (self._cursor + step + 1) % n
                    replica.requests += 1
                    return url
                if not pending or now >= deadline:
                    return None
                self._cond.wait(timeout=deadline - now)

    def record_success(self, url: str) -> None:
        """The replica answered (even with an input error): close its breaker."""
        with self._cond:
            replica = self._get(url)
            if replica.opened_at is not None:
                _logger.info("Triton replica %s answered again: circuit breaker closed", url)
            replica.consecutive_failures = 0
            replica.opened_at = replica.open_since = None
            replica.trial_in_flight = False
            self._cond.notify_all()

    def record_failure(self, url: str, error: str, threshold: int, reset_s: float) -> None:
        """A transient failure: count it, open the breaker at ``threshold`` in a row."""
        with self._cond:
            replica = self._get(url)
            replica.consecutive_failures += 1
            replica.transient_failures += 1
            replica.last_error = error
            if replica.trial_in_flight or (
                replica.opened_at is None and replica.consecutive_failures >= threshold
            ):
                now = self._clock()
                replica.opened_at = now
                if replica.open_since is None:
                    replica.open_since = now
                replica.trial_in_flight = False
                _logger.warning(
                    "Triton replica %s: circuit breaker open after %d consecutive transient "
                    "failures; skipped for %.1fs (last error: %s)",
                    url,
                    replica.consecutive_failures,
                    reset_s,
                    error,
                )
            self._cond.notify_all()

    def release(self, url: str) -> None:
        """A request ended without a verdict on the replica (a local error): free the trial."""
        with self._cond:
            self._get(url).trial_in_flight = False
            self._cond.notify_all()

    def open_since_before(self, urls: Iterable[str], moment: float) -> bool:
        """True if every replica's breaker has been open since before ``moment``.

        A call that starts against replicas already known to be down fails fast; one whose
        own failures opened the breakers (a restart mid-call) may wait for the next trial.
        """
        with self._cond:
            return all(
                (since := self._get(url).open_since) is not None and since < moment for url in urls
            )

    def next_trial_in(self, urls: Iterable[str], reset_s: float) -> float:
        """Seconds until the first open replica among ``urls`` may take a trial request."""
        with self._cond:
            now = self._clock()
            waits = [
                max(0.0, r.opened_at + reset_s - now)
                for r in (self._get(url) for url in urls)
                if r.opened_at is not None
            ]
            return min(waits, default=0.0)

    def snapshot(self, urls: list[str], reset_s: float) -> list[ReplicaHealth]:
        with self._cond:
            now = self._clock()
            health = []
            for url in urls:
                r = self._get(url)
                state: BreakerState = "closed"
                retry_in: float | None = None
                if r.opened_at is not None:
                    retry_in = max(0.0, r.opened_at + reset_s - now)
                    state = "half_open" if retry_in == 0.0 or r.trial_in_flight else "open"
                health.append(
                    ReplicaHealth(
                        url=url,
                        state=state,
                        consecutive_failures=r.consecutive_failures,
                        retry_in_s=retry_in,
                        requests=r.requests,
                        transient_failures=r.transient_failures,
                        last_error=r.last_error,
                    )
                )
            return health
