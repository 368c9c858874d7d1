"""Storage failures told apart from content failures while a file is being read."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import IO, Any, TypeVar

T = TypeVar("T")


class StorageError(Exception):
    """The filesystem failed while reading (not the content): wraps the original ``OSError``.

    Kept apart from ``OSError`` because pyarrow reports some content errors (a corrupt Parquet
    page) as ``OSError`` too, and those must be quarantined, not retried forever.
    """

    def __init__(self, original: OSError) -> None:
        super().__init__(str(original))
        self.original = original


class GuardedFile(io.RawIOBase):
    """Re-raises the storage's ``OSError`` as ``StorageError``; otherwise a plain file."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except OSError as exc:
            raise StorageError(exc) from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._call(self._raw.seekable))

    def read(self, size: int | None = -1) -> bytes:
        return self._call(lambda: self._raw.read(-1 if size is None else size))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(lambda: self._raw.seek(offset, whence))

    def tell(self) -> int:
        return self._call(self._raw.tell)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
        super().close()
