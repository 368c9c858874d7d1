"""Phone matching in a process of its own, so that its Python does not hold the landing's lock.

libphonenumber is asked once per phone-like digit run, from Python. On an export with many
numbers that loop holds the interpreter lock while the reader, the conform step and the Parquet
writer wait for it, and on two cores the landing ran at the speed of that lock. A
``PhoneWorker`` runs the same :func:`~aios_dagster.lib.connectors.phone_text.mask_phones` in a
child process (``python -m aios_dagster.lib.connectors.phone_worker``) fed over its pipes.

The child imports ``phone_text`` and the standard library only, so it is ready in a fraction
of a second; the rows travel as Arrow keeps them (one validity byte per row, int64 offsets,
the UTF-8 bytes), so neither side converts more than the texts themselves.

It speeds masking up and is never a condition of it:

* the child starts only when a call brings enough rows to repay a process start; that call
  waits up to a second for it, and until it says it is ready, calls are masked here, by the
  same function, so with the same result;
* if the child dies or answers out of turn, that call and every later one are masked here, and
  one warning says so;
* a child whose parent is gone reads the end of its input and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import subprocess
import sys
import threading
from array import array
from types import TracebackType
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # the child process never imports Arrow
    import pyarrow as pa

log = logging.getLogger(__name__)

_READY = b"R"
#: A request: rows, bytes of text, bytes of placeholder. An answer: rows, bytes, phones masked.
#: Both sides run on one machine, so numbers travel in its native byte order.
_HEAD = struct.Struct("=qqq")
#: Fewer flagged rows than this in one call are masked here: a process start costs more.
START_ROWS = 1_000
#: How long the call that starts the child waits for it (it needs a few tenths of a second),
#: rather than masking its rows here; later calls never wait.
READY_WAIT_S = 1.0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise EOFError(f"the stream ended after {len(data)} of {size} bytes")
    return data


class PhoneWorker:
    """A ``RowMasker`` (see ``phones``) that masks in a child process once one is worth it.

    Use it as a context manager around one landing run; calls come from one thread at a time
    (a lock keeps the requests and answers paired if not).
    """

    def __init__(self, *, start_rows: int = START_ROWS) -> None:
        self.start_rows = start_rows
        self.calls = 0  # calls with rows to mask (one per masked text column of a batch)
        self.served = 0  # of those, the ones the child answered
        self.failure: str | None = None  # why the child is no longer used, if it is not
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._lock = threading.Lock()

    def __enter__(self) -> PhoneWorker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def summary(self) -> str:
        """Where this run's phones were matched, for the run's metadata."""
        if self.failure is not None:
            return f"in-process after the worker failed ({self.failure})"
        if self.served:
            return f"worker process ({self.served} of {self.calls} calls)"
        return "in-process"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __call__(self, texts: pa.Array, placeholder: str = "[PHONE]") -> tuple[pa.Array, int]:
        from aios_dagster.lib.connectors.phones import mask_candidate_rows

        with self._lock:
            self.calls += 1
            if (
                self._proc is None
                and self.failure is None
                and len(texts) >= self.start_rows
                and _cores() > 1
            ):
                self._start()
                wait = READY_WAIT_S  # ready sooner than this batch would be masked here
            else:
                wait = 0.0
            if self._usable(wait):
                try:
                    return self._remote(texts, placeholder)
                except (OSError, ValueError, EOFError) as exc:
                    self._give_up(f"{type(exc).__name__}: {exc}")
        return mask_candidate_rows(texts, placeholder)

    def close(self) -> None:
        """End the child: the end of its input, then a wait (a kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
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

    def _usable(self, wait: float) -> bool:
        proc = self._proc
        if proc is None or self.failure is not None:
            return False
        if self._ready:
            return True
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], wait)
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
        import numpy as np
        import pyarrow as pa

        from aios_dagster.lib.connectors.columns import contiguous, string_offsets

        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        texts = contiguous(texts).cast(pa.string())
        rows = len(texts)
        offsets = string_offsets(texts)
        data = texts.buffers()[2]
        text = memoryview(b"") if data is None else memoryview(data)[offsets[0] : offsets[-1]]
        present = texts.is_valid().to_numpy(zero_copy_only=False)
        mark = placeholder.encode()
        proc.stdin.write(_HEAD.pack(rows, len(text), len(mark)) + mark)
        proc.stdin.write(present.astype(np.uint8).tobytes())
        proc.stdin.write((offsets - offsets[0]).astype(np.int64).tobytes())  # native, as array
        proc.stdin.write(text)
        proc.stdin.flush()
        answered, size, phones = _HEAD.unpack(_read(proc.stdout, _HEAD.size))
        if answered != rows:
            raise ValueError(f"answered {answered} rows for {rows}")
        new_offsets = _read(proc.stdout, 8 * (rows + 1))
        masked = _read(proc.stdout, size)
        nulls = rows - int(present.sum())
        validity = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
        result = pa.LargeStringArray.from_buffers(
            rows, pa.py_buffer(new_offsets), pa.py_buffer(masked), validity, null_count=nulls
        )
        self.served += 1
        return result.cast(pa.string()), phones

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
    """The child: warm the matchers, say ready, then answer each request in turn."""
    from aios_dagster.lib.connectors.phone_text import forget_seen_numbers, mask_phones

    mask_phones("call 020 7946 0958 or +1 415 555 0100")  # loads both ports' plans
    forget_seen_numbers()
    out, source = sys.stdout.buffer, sys.stdin.buffer
    out.write(_READY)
    out.flush()
    while True:
        head = source.read(_HEAD.size)
        if not head:
            return 0  # the parent closed: the run is over
        rows, size, mark_size = _HEAD.unpack(head)
        placeholder = _read(source, mark_size).decode()
        present = _read(source, rows)
        offsets = array("q")
        offsets.frombytes(_read(source, 8 * (rows + 1)))
        text = _read(source, size)
        pieces: list[bytes] = []
        ends = array("q", [0])
        total = length = 0
        for row in range(rows):
            if present[row]:
                value = text[offsets[row] : offsets[row + 1]].decode()
                new, found = mask_phones(value, placeholder)
                total += found
                piece = new.encode()
                pieces.append(piece)
                length += len(piece)
            ends.append(length)
        masked = b"".join(pieces)
        out.write(_HEAD.pack(rows, len(masked), total))
        out.write(ends.tobytes())
        out.write(masked)
        out.flush()


if __name__ == "__main__":
    raise SystemExit(main())
