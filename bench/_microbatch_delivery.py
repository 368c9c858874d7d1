"""Delivering mail to the inbox one email at a time, and seeing each one's prediction land.

Part of ``bench/microbatch_latency.py`` (see its docstring for what is measured and why).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from aios_dagster.lib.contracts.landing import quarantine_dataset
from aios_dagster.lib.generator import deliver_new_emails
from aios_dagster.settings import Settings

PREDICTIONS = "email_router_predictions"
SMALL = {"emails_per_week": 1_200, "customers": 300, "weeks": 2, "seed": 11}
"""Reference data generated before the timed phases: enough for a trained, served model."""


class BenchFailure(RuntimeError):
    """The pipeline stalled or failed: the message carries the evidence."""


# ----------------------------------------------------------------------------- delivery


def stage_emails(settings: Settings, folder: Path, *, count: int, seed: int) -> list[Path]:
    """Generate ``count`` new emails dated today (UTC) outside the inbox, in time order."""
    (folder / "crm").mkdir(parents=True)
    shutil.copy(settings.crm_csv, folder / "crm" / "customers.csv")
    return deliver_new_emails(folder, count=count, seed=seed, day=datetime.now(UTC).date())


class Delivery(threading.Thread):
    """Moves staged emails into the inbox at a steady rate; records each delivery time."""

    def __init__(
        self,
        staged: list[Path],
        inbox: Path,
        interval_s: float,
        send: Callable[[Path], None] | None = None,
    ) -> None:
        """``send`` delivers one message another way (to a broker); default: into ``inbox``."""
        super().__init__(name="delivery", daemon=True)
        self.staged, self.inbox, self.interval_s = staged, inbox, interval_s
        self.send = send or self._into_inbox
        self.delivered: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.started_at = 0.0

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            for i, src in enumerate(self.staged):
                due = self.started_at + i * self.interval_s
                if self.stop_event.wait(max(0.0, due - time.monotonic())):
                    return
                self.send(src)
                self.delivered[src.stem] = time.time()
        except BaseException as exc:  # reported by the waiting loop
            self.error = exc

    def _into_inbox(self, src: Path) -> None:
        tmp = self.inbox / f".{src.name}.part"  # not *.eml: the connector ignores it
        tmp.write_bytes(src.read_bytes())
        tmp.replace(self.inbox / src.name)

    @property
    def done(self) -> bool:
        return len(self.delivered) == len(self.staged)


class Watcher(threading.Thread):
    """Reads each new predictions part once: first-seen part mtime and run of every record."""

    def __init__(self, lake_dir: Path, poll_s: float = 0.25) -> None:
        super().__init__(name="watcher", daemon=True)
        self.pred_dir = lake_dir / PREDICTIONS
        self.quarantine_dir = lake_dir / quarantine_dataset("emails")
        self.poll_s = poll_s
        self.lock = threading.Lock()
        self.persisted: dict[str, tuple[float, str]] = {}
        self.quarantined: set[str] = set()
        self.seen: set[tuple[str, int]] = set()
        self.stop_event = threading.Event()
        self.last_change = time.time()
        self.error: BaseException | None = None

    @staticmethod
    def _parts(folder: Path) -> list[tuple[Path, os.stat_result]]:
        if not folder.exists():
            return []
        found = []
        for path in folder.rglob("*.parquet"):
            if path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                found.append((path, path.stat()))
        return found

    def prime(self) -> None:
        """What is there already is not this phase's: never read it."""
        for folder in (self.pred_dir, self.quarantine_dir):
            self.seen |= {(str(p), st.st_mtime_ns) for p, st in self._parts(folder)}

    def poll(self) -> None:
        for path, st in self._parts(self.pred_dir):
            key = (str(path), st.st_mtime_ns)
            if key in self.seen:
                continue
            try:
                table = pq.read_table(path, columns=["record_id", "run_id"])
            except (FileNotFoundError, OSError):
                continue  # replaced between listing and reading: the next poll sees it
            self.seen.add(key)
            with self.lock:
                for rid, run_id in zip(
                    table.column("record_id").to_pylist(),
                    table.column("run_id").to_pylist(),
                    strict=True,
                ):
                    if rid not in self.persisted:
                        self.persisted[rid] = (st.st_mtime, run_id)
                        self.last_change = time.time()
        for path, st in self._parts(self.quarantine_dir):
            key = (str(path), st.st_mtime_ns)
            if key in self.seen:
                continue
            try:
                ids = pq.read_table(path, columns=["record_id"]).column(0).to_pylist()
            except (FileNotFoundError, OSError):
                continue
            self.seen.add(key)
            with self.lock:
                self.quarantined |= {i for i in ids if i}
                self.last_change = time.time()

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.poll_s):
                self.poll()
        except BaseException as exc:  # reported by the waiting loop
            self.error = exc


@dataclass
class PhaseResult:
    name: str
    delivered: dict[str, float]
    persisted: dict[str, tuple[float, str]]
    quarantined: set[str]
    wall_s: float
    latencies: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latencies = {
            rid: self.persisted[rid][0] - t
            for rid, t in self.delivered.items()
            if rid in self.persisted
        }


def run_phase(
    name: str,
    staged: list[Path],
    settings: Settings,
    *,
    interval_s: float,
    timeout_s: float,
    stall_s: float,
    tick: Callable[[], None],
    diagnose: Callable[[], str],
    send: Callable[[Path], None] | None = None,
) -> PhaseResult:
    """Deliver ``staged`` and wait until each email is persisted or quarantined.

    ``tick`` is called in the waiting loop (the floor runs its jobs there; the daemon path
    checks the daemon is alive). ``diagnose`` gives the evidence a stall is reported with.
    """
    watcher = Watcher(settings.lake_dir)
    watcher.prime()
    delivery = Delivery(staged, settings.mailbox_dir, interval_s, send)
    started = time.time()
    watcher.start()
    delivery.start()
    deadline = started + len(staged) * interval_s + timeout_s
    try:
        while True:
            for thread in (delivery, watcher):
                if thread.error is not None:
                    raise BenchFailure(f"{name}: {thread.name} thread failed") from thread.error
            tick()
            with watcher.lock:
                done = set(watcher.persisted) | watcher.quarantined
                last_change = watcher.last_change
            pending = sorted(set(delivery.delivered) - done)
            if delivery.done and not pending:
                break
            now = time.time()
            quiet_since = max(last_change, max(delivery.delivered.values(), default=started))
            stalled = bool(pending) and now - quiet_since > stall_s
            if stalled or now > deadline:
                why = f"no progress for {stall_s:.0f} s" if stalled else "timed out"
                raise BenchFailure(
                    f"{name}: {why}; {len(pending)} of {len(delivery.delivered)} delivered "
                    f"emails have no prediction (first: {pending[:3]})\n{diagnose()}"
                )
            time.sleep(0.2)
    finally:
        delivery.stop_event.set()
        watcher.stop_event.set()
        delivery.join(timeout=5)
        watcher.join(timeout=5)
    watcher.poll()
    return PhaseResult(
        name,
        dict(delivery.delivered),
        {k: v for k, v in watcher.persisted.items() if k in delivery.delivered},
        watcher.quarantined & set(delivery.delivered),
        time.time() - started,
    )
