"""Phone matching in a process of its own, so that its Python does not hold the landing's lock.

libphonenumber is asked once per phone-like digit run, from Python. On an export with many
numbers that loop holds the interpreter lock while the reader, the conform step and the Parquet
writer wait for it, and on two cores the landing ran at the speed of that lock. A
``PhoneWorker`` runs the same :func:`~aios_dagster.lib.connectors.phones.mask_candidate_rows`
in a child process (``python -m aios_dagster.lib.connectors.phone_worker``) fed over its pipes
in Arrow IPC: the flagged rows go in, the masked rows and their count come back, in order.

It speeds masking up and is never a condition of it:

* the child starts only when a call brings enough rows to repay a process start; until it says
  it is ready, calls are masked here, by the same function, so with the same result;
* if the child dies or answers out of turn, that call and every later one are masked here, and
  one warning says so;
* a child whose parent is gone reads the end of its input and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
from types import TracebackType
from typing import IO

import pyarrow as pa

from aios_dagster.lib.connectors.columns import string_array
from aios_dagster.lib.connectors.phones import mask_candidate_rows

log = logging.getLogger(__name__)

_READY = b"R"
#: Fewer flagged rows than this in one call are masked here: a process start costs more.
START_ROWS = 1_000


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class PhoneWorker:
    """A ``RowMasker`` (see ``phones``) that masks in a child process once one is worth it.

    Use it as a context manager around one landing run; calls come from one thread at a time
    (a lock keeps the requests and answers paired if not).
    """

    def __init__(self, *, start_rows: int = START_ROWS) -> None:
        self.start_rows = start_rows
        self.served = 0  # calls the child answered
        self.failure: str | None = None  # why the child is no longer used, if it is not
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._reader: pa.ipc.RecordBatchStreamReader | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> PhoneWorker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __call__(self, texts: pa.Array, placeholder: str = "[PHONE]") -> tuple[pa.Array, int]:
        with self._lock:
            if (
                self._proc is None
                and self.failure is None
                and len(texts) >= self.start_rows
                and _cores() > 1
            ):
                self._start()
            if self._usable():
                try:
                    return self._remote(texts, placeholder)
                except (OSError, ValueError, pa.ArrowException, StopIteration) as exc:
                    self._give_up(f"{type(exc).__name__}: {exc}")
        return mask_candidate_rows(texts, placeholder)

    def close(self) -> None:
        """End the child: the end of its input stream, then a wait (a kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        _close_quietly(proc.stdin)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _close_quietly(proc.stdout)

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def _usable(self) -> bool:
        proc = self._proc
        if proc is None or self.failure is not None:
            return False
        if self._ready:
            return True
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 0)
        if not readable:
            if proc.poll() is not None:
                self._give_up(f"exited with status {proc.returncode} while starting")
            return False
        if proc.stdout.read(1) != _READY:
            self._give_up(f"did not start (status {proc.poll()})")
            return False
        self._ready = True
        return True

    def _remote(self, texts: pa.Array, placeholder: str) -> tuple[pa.Array, int]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        request = pa.record_batch([texts.cast(pa.string())], names=["text"])
        if self._writer is None:
            self._writer = pa.ipc.new_stream(proc.stdin, request.schema)
        self._writer.write_batch(request, custom_metadata={"placeholder": placeholder})
        proc.stdin.flush()
        if self._reader is None:
            self._reader = pa.ipc.open_stream(proc.stdout)
        answer, meta = self._reader.read_next_batch_with_custom_metadata()
        if answer.num_rows != len(texts) or meta is None or b"phones" not in meta:
            raise ValueError(f"answered {answer.num_rows} rows for {len(texts)}")
        self.served += 1
        return answer.column(0), int(meta[b"phones"])

    def _give_up(self, reason: str) -> None:
        self.failure = reason
        log.warning("phone worker %s: %s; masking phones in this process", self.pid, reason)
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        self.close()


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def main() -> int:
    """The child: warm the matchers, say ready, then answer each request batch in turn."""
    from aios_dagster.lib.connectors.phones import forget_seen_numbers

    mask_candidate_rows(string_array(["call 020 7946 0958 or +1 415 555 0100"]))  # both plans
    forget_seen_numbers()
    out, source = sys.stdout.buffer, sys.stdin.buffer
    out.write(_READY)
    out.flush()
    try:
        reader = pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError):  # closed before the first request
        return 0
    writer: pa.ipc.RecordBatchStreamWriter | None = None
    while True:
        try:
            request, meta = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return 0
        placeholder = (meta or {}).get(b"placeholder", b"[PHONE]").decode()
        masked, total = mask_candidate_rows(request.column(0), placeholder)
        answer = pa.record_batch([masked], names=["text"])
        if writer is None:
            writer = pa.ipc.new_stream(out, answer.schema)
        writer.write_batch(answer, custom_metadata={"phones": str(total)})
        out.flush()


if __name__ == "__main__":
    raise SystemExit(main())
