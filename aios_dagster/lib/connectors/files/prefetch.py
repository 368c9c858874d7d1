"""Read the next batch while the current one is landed.

Parsing a CSV block and decompressing run in pyarrow without holding Python's lock, so on a
second core they overlap masking, casting and writing of the batch before. Only ``depth`` items
are ever read ahead, so memory stays bounded, and the cursor still advances only as the consumer
lands each batch: reading ahead changes when bytes are read, never what is committed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.1


class _End:
    """Marks the end of the items (``error`` set: the producer failed with it)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetched(items: Iterator[T], *, depth: int = 1, name: str = "prefetch") -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer.

    An exception raised while producing is raised to the consumer at the point it would have
    surfaced without the thread. Closing this generator (or leaving it early) stops the producer
    and closes ``items`` in the producer's thread.
    """
    handoff: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(_End(exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        offer(_End())

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        worker.join()
