"""The long-running handler: consume events, run the declared steps, commit only what is durable.

One pass takes at most ``batch.max_events`` events (bounded in-flight work), runs the pipeline
over them and commits them to the source only after ``persist`` returned, so a crash at any
point re-delivers exactly the uncommitted events; ``score`` skips those whose decision was
already written (``Work.replay``). When Triton is unavailable (after the resource's own short
retries) the handler stops consuming: it pauses the source, keeps the events it holds, waits
for Triton to be ready, records how long it waited and how far behind it fell, and resumes.
Nothing is queued beyond one pass, and nothing is dropped.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aios_dagster.lib.connectors.source import TransientSourceError
from aios_dagster.lib.realtime.events import EventSource
from aios_dagster.lib.realtime.handler_spec import HandlerSpec
from aios_dagster.lib.realtime.steps import STEPS, HandlerContext, Work, warm_up
from aios_dagster.lib.serving.errors import TritonTransientError

log = logging.getLogger("aios_dagster.realtime")


@dataclass
class RuntimeStats:
    """What the handler did since it started (reported to Dagster, printed by ``serve``)."""

    started_at: float = field(default_factory=time.time)
    passes: int = 0
    events: int = 0
    decided: int = 0
    landed: int = 0
    quarantined: int = 0
    already_decided: int = 0
    triton_waits: int = 0
    commit_retries: int = 0
    warm_up_s: float = 0.0
    paused_s: float = 0.0
    max_lag: int = 0
    last_lag: int | None = None
    # email published (broker timestamp, file mtime) to its decision durable, seconds
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    days: set[str] = field(default_factory=set)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.time() - self.started_at, 1e-9)
        return {
            "passes": self.passes,
            "events": self.events,
            "decided": self.decided,
            "landed": self.landed,
            "quarantined": self.quarantined,
            "already_decided": self.already_decided,
            "throughput_per_s": round(self.events / elapsed, 3),
            "latency_s_p50": self.percentile(0.5),
            "latency_s_p95": self.percentile(0.95),
            "latency_s_mean": statistics.fmean(self.latencies_s) if self.latencies_s else None,
            "triton_waits": self.triton_waits,
            "commit_retries": self.commit_retries,
            "warm_up_s": round(self.warm_up_s, 3),
            "paused_s": round(self.paused_s, 3),
            "lag": self.last_lag,
            "max_lag": self.max_lag,
        }


class HandlerRuntime:
    def __init__(
        self,
        spec: HandlerSpec,
        ctx: HandlerContext,
        source: EventSource,
        *,
        on_report: Callable[[RuntimeStats], None] | None = None,
        triton_wait_s: float = 2.0,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.source = source
        self.on_report = on_report
        self.triton_wait_s = triton_wait_s
        self.stats = RuntimeStats()
        self._steps = [STEPS[name] for name in spec.steps]
        self._reported = time.monotonic()

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_events: int | None = None,
        idle_exit_s: float | None = None,
    ) -> RuntimeStats:
        """Handle events until ``stop`` is set, ``max_events`` are done, or nothing arrived for
        ``idle_exit_s`` (tests and the demo; a deployment runs until stopped)."""
        stop = stop or threading.Event()
        started = time.perf_counter()
        while True:  # imports and Triton's config before the first event waits on them
            try:
                warm_up(self.ctx)
                break
            except (TritonTransientError, TimeoutError) as exc:  # started while Triton is away
                if not self._wait_for_triton(exc, stop):
                    return self.stats
        self.stats.warm_up_s = time.perf_counter() - started
        log.info("%s: ready, consuming (warm-up %.1f s)", self.spec.name, self.stats.warm_up_s)
        replay = True  # the first pass after a start may hold events decided before a crash
        idle_since = time.monotonic()
        linger = self.spec.batch.linger_ms / 1000
        while not stop.is_set():
            if max_events is not None and self.stats.events >= max_events:
                break
            want = self.spec.batch.max_events
            if max_events is not None:
                want = min(want, max_events - self.stats.events)
            events = self.source.poll(want, max(linger, 0.05))
            if not events:
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                self._maybe_report()
                continue
            work = self._process(Work(events, replay=replay), stop)
            if work is None or not self._commit(events, stop):
                break  # stopped while waiting: the events stay uncommitted, and come again
            replay = False
            idle_since = time.monotonic()
            self._count(work)
            self._maybe_report()
        self._report()
        return self.stats

    def _process(self, work: Work, stop: threading.Event) -> Work | None:
        while True:
            try:
                for step in self._steps:
                    started = time.perf_counter()
                    step(self.ctx, work)
                    work.timings_s[step.__name__] = time.perf_counter() - started
                return work
            except (TritonTransientError, TimeoutError) as exc:
                if not self._wait_for_triton(exc, stop):
                    return None
                # Some days' decisions may be written already: decide the rest only.
                work = Work(work.events, replay=True)

    def _commit(self, events: list[Any], stop: threading.Event) -> bool:
        """Commit, riding through a broker that is briefly away: the decisions are durable, so
        committing later is safe, and consuming more before the commit would only grow what a
        crash replays. False if stopped first."""
        wait = 0.2
        while True:
            try:
                self.source.commit(events)
                return True
            except TransientSourceError as exc:
                self.stats.commit_retries += 1
                log.warning("%s: commit failed (%s); retrying in %.1f s", self.spec.name, exc, wait)
                if stop.wait(wait):
                    return False
                wait = min(wait * 2, 5.0)

    def _wait_for_triton(self, exc: BaseException, stop: threading.Event) -> bool:
        """Backpressure: stop consuming until Triton answers again; False if stopped."""
        self.stats.triton_waits += 1
        self.source.pause()
        began = time.monotonic()
        log.warning("%s: Triton unavailable (%s); consumption paused", self.spec.name, exc)
        try:
            while not stop.is_set():
                self._note_lag()
                try:
                    self.ctx.triton.wait_until_ready(timeout_s=self.triton_wait_s)
                    return True
                except TimeoutError:
                    continue
            return False
        finally:
            waited = time.monotonic() - began
            self.stats.paused_s += waited
            self.source.resume()
            log.warning(
                "%s: consumption resumed after %.1f s (lag %s)",
                self.spec.name,
                waited,
                self.stats.last_lag,
            )

    def _note_lag(self) -> None:
        lag = self.source.lag()
        self.stats.last_lag = lag
        if lag is not None:
            self.stats.max_lag = max(self.stats.max_lag, lag)

    def _count(self, work: Work) -> None:
        stats = self.stats
        stats.passes += 1
        stats.events += len(work.events)
        if work.report is not None:
            stats.landed += work.report.rows_landed
            stats.quarantined += work.report.records_quarantined
        if work.decisions is not None:
            stats.decided += work.decisions.num_rows
        if work.written is not None:
            stats.days.update(d.isoformat() for d in work.written.days)
        stats.already_decided += work.already_decided
        now = datetime.now(UTC)
        for event in work.events:
            if event.published_at is not None:
                stats.latencies_s.append((now - event.published_at).total_seconds())

    def _maybe_report(self) -> None:
        if time.monotonic() - self._reported >= self.spec.report_every_s:
            self._note_lag()
            self._report()

    def _report(self) -> None:
        self._reported = time.monotonic()
        if self.on_report is not None:
            try:
                self.on_report(self.stats)
            except Exception:  # reporting must never stop the handler
                log.exception("%s: report to Dagster failed", self.spec.name)
