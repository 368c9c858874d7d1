"""Where each connector's position in its source is kept between runs.

A cursor is a small JSON document per connector, written atomically (temp file + rename) and
only *after* the batch it describes is in the lake. So a crash between the two means the batch
is read again (and, its lake part being named after the batch, rewritten rather than duplicated),
never that it is skipped. The store lives beside the lake by default, so resetting a lake folder
resets its cursors with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from aios_dagster.lib.connectors.source import Cursor


class ConnectorBusyError(RuntimeError):
    """Another run holds the connector's lock."""


class CursorStore(dg.ConfigurableResource):
    """One JSON cursor file per connector under ``root``."""

    root: str

    def _path(self, connector: str) -> Path:
        return Path(self.root) / f"{connector}.json"

    def load(self, connector: str) -> Cursor:
        """The saved cursor, or ``{}`` (read everything) for a connector never run."""
        path = self._path(connector)
        if not path.exists():
            return {}
        data: Any = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"cursor file {path} does not hold a JSON object")
        return data

    def save(self, connector: str, cursor: Cursor) -> None:
        path = self._path(connector)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(cursor, sort_keys=True, default=str))
        tmp.replace(path)

    @contextlib.contextmanager
    def exclusive(self, connector: str) -> Iterator[None]:
        """Hold the connector's lock while landing: one writer per cursor.

        Several jobs materialise a connector (its own trigger, ``triage_job``, a manual run);
        two at once would both start from the same cursor and the later save could roll the
        other's back. A second run fails at once with a clear message instead of waiting.
        ``flock`` covers every process on this host (or a shared volume with working locks).
        """
        path = Path(self.root) / f"{connector}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConnectorBusyError(
                    f"connector {connector}: another run is landing it right now ({path}); "
                    "this run did nothing and can simply be retried"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def reset(self, connector: str) -> bool:
        """Forget the position: the next run re-reads the source (dedup keeps rows single)."""
        path = self._path(connector)
        if path.exists():
            path.unlink()
            return True
        return False
