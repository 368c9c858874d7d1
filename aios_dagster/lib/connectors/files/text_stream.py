"""Bytes to validated UTF-8 text: one place that knows encodings, binary files and line numbers."""

from __future__ import annotations

import codecs
import collections
import contextlib
import io
from collections.abc import Callable
from typing import IO, Any

import fsspec.compression
import numpy as np
import pyarrow as pa

from aios_dagster.lib.connectors.files.storage import StorageError

#: How much of a file is decoded at a time (memory is bounded by it, not by the file's size).
TEXT_CHUNK_BYTES = 1 << 20
_BINARY_SNIFF_BYTES = 8192


class BadInput(Exception):
    """The content cannot be read further: becomes a ``Reject`` with ``rule``.

    ``good`` is the valid UTF-8 text of the current chunk before the bad spot, so the rows
    before it can still be read.
    """

    def __init__(self, rule: str, detail: str, line: int | None = None, good: bytes = b"") -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
        self.line = line
        self.good = good


def _ascii_compatible(encoding: str) -> bool:
    """Newlines and NULs are single bytes in this encoding (not UTF-16/32)."""
    try:
        return "\n\0a,".encode(encoding) == b"\n\0a,"
    except UnicodeError:
        return False


_LF, _CR = ord("\n"), ord("\r")
_UTF8_BOM = codecs.BOM_UTF8


class TextStream(io.RawIOBase):
    """A read-only stream of validated UTF-8 that only ever hands out whole lines.

    Decoding here rather than inside pyarrow is what turns a wrong encoding or a binary file into
    a message with a byte offset and line number (pyarrow only says "invalid UTF8 data"), lets
    the JSON-lines reader share the same checks, and transcodes other encodings to UTF-8 in
    bounded chunks.

    When the content goes bad (a NUL byte, bytes invalid in the encoding, a broken compressed
    stream) the stream does not raise into the parser: it ends cleanly after the last complete
    line before the bad spot and keeps the problem in ``error``. Raising inside pyarrow would
    surface the error at a point that depends on its read-ahead threads; ending cleanly makes
    what is read before it depend on the bytes only, so a re-read yields the same batches.
    ``on_blank_line`` receives the physical number of each empty line, which the CSV reader
    needs because pyarrow does not count empty lines in its row numbers.
    """

    def __init__(
        self,
        raw: IO[bytes],
        encoding: str,
        *,
        decompress: str | None = None,
        on_blank_line: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._file = raw
        self._raw: IO[bytes] = (
            fsspec.compression.compr[decompress](raw, mode="rb") if decompress else raw
        )
        self._encoding = codecs.lookup(encoding).name
        self._utf8 = self._encoding in {"utf-8", "utf-8-sig"}
        self._ascii = _ascii_compatible(encoding)
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._on_blank = on_blank_line
        self.error: BadInput | None = None
        self._pieces: collections.deque[memoryview] = collections.deque()  # handed out next
        self._carry = b""  # the incomplete last line, handed out with the next chunk
        self._consumed = 0  # raw (decompressed) bytes read so far
        self._lines = 0  # newlines handed out so far
        self._tail = b""  # last two bytes handed out: blank lines across chunk boundaries
        self._first = True
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        parts: list[memoryview] = []
        wanted = -1 if size is None else size
        got = 0
        while wanted < 0 or got < wanted:
            piece = self._next_piece(-1 if wanted < 0 else wanted - got)
            if piece is None:
                break
            got += len(piece)
            parts.append(piece)
        return b"".join(parts)

    def _next_piece(self, size: int) -> memoryview | None:
        """A view of the next at most ``size`` (< 0: any) bytes of one piece; None at the end."""
        while not self._pieces:
            if self._eof:
                return None
            self._fill()
        piece = self._pieces[0]
        if 0 <= size < len(piece):
            self._pieces[0] = piece[size:]
            return piece[:size]
        self._pieces.popleft()
        return piece

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._raw is not self._file:
                self._raw.close()
        with contextlib.suppress(Exception):
            self._file.close()
        super().close()

    def _fill(self) -> None:
        try:
            out = self._next_chunk()
        except BadInput as problem:
            self.error, out, self._eof = problem, problem.good, True
        if self._first and out:
            self._first = False
            if out.startswith(_UTF8_BOM):
                out = out[len(_UTF8_BOM) :]
        # The held-back line and this chunk's whole lines go out as two pieces: joining them
        # would copy every byte once more. The carry never holds a newline; after a problem
        # it is dropped, so the stream ends with the last complete line.
        carry, self._carry = self._carry, b""
        if self._eof and self.error is None:
            cut = len(out)  # the end of the text: everything goes out
        else:
            cut = out.rfind(b"\n") + 1
            if not cut:  # no line ends in this chunk: nothing goes out yet
                if self.error is None:
                    self._carry = carry + out
                carry = b""
            elif self.error is None:
                self._carry = out[cut:]
        for data, end in ((carry, len(carry)), (out, cut)):
            if end:
                self._hand_out(data, end)
        if self.error is not None:
            self.error.line = self._lines + 1  # the first line not handed out

    def _hand_out(self, data: bytes, end: int) -> None:
        """Queue ``data[:end]`` for the reader, counting its lines and reporting empty ones."""
        view = memoryview(data)
        if end < len(data):
            view = view[:end]
        if self._on_blank is not None:
            newlines = _newlines(view)
            self._find_blank_lines(data, end, newlines)
            self._lines += len(newlines)
        else:
            self._lines += data.count(b"\n", 0, end)
        self._tail = (self._tail + data[max(end - 2, 0) : end])[-2:]
        self._pieces.append(view)

    def _next_chunk(self) -> bytes:
        """The next chunk as valid UTF-8 (raises ``BadInput`` carrying the good prefix)."""
        try:
            data = self._raw.read(TEXT_CHUNK_BYTES)
        except StorageError:
            raise
        except (OSError, EOFError, ValueError) as exc:  # a broken compressed stream
            raise BadInput(
                "unparseable",
                f"cannot decompress after byte {self._consumed} (line {self._lines + 1}): {exc}",
            ) from exc
        start = self._consumed
        self._consumed += len(data)
        final = not data
        self._eof = final
        pending = self._decoder.getstate()[0]
        whole = pending + data if pending else data
        base = start - len(pending)  # file offset of whole[0]
        nul = whole.find(b"\0") if self._ascii else -1
        if self._first and 0 <= nul < _BINARY_SNIFF_BYTES:
            problem = self._bad_spot("binary_file", whole, nul, base)
            problem.good = b""  # a binary file from its first bytes: no line of it is text
            raise problem
        if self._utf8 and nul < 0:
            # The usual chunk: valid UTF-8, checked without building the text. The decoder
            # below is the slow path that finds where, and what, is wrong.
            keep = len(whole) if final else _complete_utf8(whole)
            head = whole if keep == len(whole) else whole[:keep]
            if _is_utf8(head):
                self._decoder.setstate((whole[keep:], 0))  # a split last char waits
                return head
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as err:
            if 0 <= nul < err.start:
                raise self._bad_spot("binary_file", whole, nul, base) from err
            raise self._bad_spot("undecodable", whole, err.start, base, err.end) from err
        if nul >= 0:
            raise self._bad_spot("binary_file", whole, nul, base)
        if not self._ascii and "\0" in text:
            good = text[: text.index("\0")]
            line = self._lines + good.count("\n") + 1
            raise BadInput(
                "binary_file", f"NUL character at line {line}: not a text file", good=good.encode()
            )
        if self._utf8:
            # Already valid UTF-8: hand out the bytes themselves, minus a split trailing char.
            keep = len(whole) - len(self._decoder.getstate()[0])
            return whole if keep == len(whole) else whole[:keep]
        return text.encode("utf-8")

    def _bad_spot(
        self, rule: str, whole: bytes, at: int, base: int, end: int | None = None
    ) -> BadInput:
        """Describe the bad bytes at ``whole[at]`` (file offset ``base + at``) for a person."""
        good = whole[:at].decode(self._encoding, "replace")
        line = self._lines + good.count("\n") + 1
        line_start = whole.rfind(b"\n", 0, at) + 1
        context = whole[max(line_start, at - 40) : at + 40].split(b"\n")[0]
        if rule == "binary_file":
            detail = (
                f"NUL byte at byte offset {base + at} (line {line}): not a {self._encoding} "
                f"text file; first bytes {whole[:16]!r}"
            )
        else:
            detail = (
                f"not valid {self._encoding} at byte offset {base + at} (line {line}): "
                f"{whole[at : end or at + 1]!r} in {context!r}; if the file uses another "
                "encoding, set `encoding` (e.g. latin-1 or cp1252) and drop it again"
            )
        return BadInput(rule, detail, line, good=good.encode("utf-8"))

    def _find_blank_lines(self, out: bytes, end: int, newlines: np.ndarray) -> None:
        """Report each empty line in ``out[:end]``, the next bytes handed out (``newlines``:
        the offsets of its ``\\n`` bytes)."""
        assert self._on_blank is not None
        tail = self._tail
        at_line_start = tail == b"" or tail.endswith(b"\n")
        after_cr = tail.endswith(b"\n\r") or tail == b"\r"
        if (at_line_start and out.startswith((b"\n", b"\r\n"), 0, end)) or (
            after_cr and out.startswith(b"\n", 0, end)
        ):
            self._on_blank(self._lines + 1)
        if len(newlines) < 2:
            return
        # A line is empty when the newline ending the line before it is followed directly by
        # its own ("\n\n") or by "\r\n"; the k-th newline (from 0) ends line ``lines + k + 1``.
        gap = np.diff(newlines)
        blank = gap == 1
        crlf = np.flatnonzero(gap == 2)
        if len(crlf):
            data = np.frombuffer(out, dtype=np.uint8)
            blank[crlf[data[newlines[crlf] + 1] == _CR]] = True
        for k in np.flatnonzero(blank).tolist():
            self._on_blank(self._lines + k + 2)


def _complete_utf8(data: bytes) -> int:
    """``len(data)`` less a character cut off at its end: bytes that begin a valid character
    but not all of it, exactly those the strict decoder would hold back for the next chunk.
    Whether the rest is valid is not decided here."""
    size = len(data)
    for back in range(1, min(3, size) + 1):
        if data[size - back] < 0x80:
            return size  # ASCII: nothing is cut off
        if data[size - back] >= 0xC0:  # the lead byte of the last character
            with contextlib.suppress(UnicodeDecodeError):
                if codecs.utf_8_decode(data[size - back :], "strict", False)[1] == 0:
                    return size - back  # a valid beginning, held back
            return size
    return size


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (as Python's strict decoder judges it), in Arrow's
    validator: several times faster than decoding, and no text object is built."""
    if data.isascii():
        return True
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    array = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _newlines(data: bytes | memoryview) -> np.ndarray:
    """Offsets of the ``\\n`` bytes in ``data``, found by numpy, which works outside Python's lock
    (the parser's read-ahead thread calls this while the batch before is being landed)."""
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _LF)
