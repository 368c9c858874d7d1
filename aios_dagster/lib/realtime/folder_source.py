"""A mailbox folder as the handler's event source: the embedded default, no broker needed.

New ``.eml`` files are picked up by listing the folder every poll (a watcher that works on any
filesystem fsspec reaches, and misses nothing across restarts). Which files are done is the
handler's own cursor in the ``CursorStore``, saved when the runtime commits them, so a file is
handed out again after a crash until its decision is durable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.files.listing import FileInfo, FileListing, mark_ingested
from aios_dagster.lib.realtime.events import Event


class FolderSourceConfig(BaseModel):
    kind: str = "folder"
    path: str
    pattern: str = "*.eml"
    min_age_s: float = Field(default=0.0, ge=0)  # files younger than this may still be written


class FolderEventSource:
    def __init__(self, config: FolderSourceConfig, cursors: CursorStore, cursor_name: str) -> None:
        self.config = config
        self.listing = FileListing.from_url(config.path, config.pattern, min_age_s=config.min_age_s)
        self.cursors = cursors
        self.cursor_name = cursor_name
        self._cursor = cursors.load(cursor_name)
        self._handed_out: dict[str, FileInfo] = {}
        self._paused = False

    def describe(self) -> str:
        return f"folder {self.listing.source}"

    def _event(self, file: FileInfo) -> Event:
        with self.listing.open(file) as handle:
            raw = handle.read()
        mtime = datetime.fromtimestamp(file.mtime, UTC) if file.mtime is not None else None
        return Event(
            source=self.describe(),
            position=file.rel_path,
            value=raw,
            name=file.rel_path,
            published_at=mtime,
        )

    def poll(self, max_events: int, timeout_s: float) -> list[Event]:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._paused and not self.listing.folder_missing():
                new = [
                    f
                    for f in self.listing.new_files(self._cursor)
                    if f.rel_path not in self._handed_out
                ][:max_events]
                if new:
                    for file in new:
                        self._handed_out[file.rel_path] = file
                    return [self._event(f) for f in new]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(left, 0.05))

    def commit(self, events: Sequence[Event]) -> None:
        files = [self._handed_out.pop(e.position) for e in events if e.position in self._handed_out]
        if files:
            self._cursor = mark_ingested(self._cursor, *files)
            self.cursors.save(self.cursor_name, self._cursor)

    def rewind(self, events: Sequence[Event]) -> None:
        for event in events:
            self._handed_out.pop(event.position, None)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def lag(self) -> int | None:
        if self.listing.folder_missing():
            return 0
        return len(self.listing.new_files(self._cursor))

    def close(self) -> None:
        return None
