"""``TextStream``: the bytes the CSV parser reads and the empty lines it is told about.

pyarrow does not count empty lines in its record numbers, so every reject's line number depends
on the stream reporting each empty line exactly once, wherever the chunks happen to be cut.
"""

from __future__ import annotations

import io
import random

import pytest

from aios_dagster.lib.connectors.files import text_stream
from aios_dagster.lib.connectors.files.text_stream import TextStream


def _blank_lines(data: bytes) -> list[int]:
    """Physical numbers of the empty lines of ``data`` (a line of only ``\\r`` is empty too; an
    unterminated last line is not a line the parser skips)."""
    lines = data.split(b"\n")[:-1]
    return [n for n, line in enumerate(lines, start=1) if line in (b"", b"\r")]


def _read_all(data: bytes) -> tuple[bytes, list[int], int]:
    blank: list[int] = []
    stream = TextStream(io.BytesIO(data), "utf-8", on_blank_line=blank.append)
    out = b""
    while piece := stream.read(3):
        out += piece
    return out, blank, stream._lines


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_every_empty_line_is_reported_once_wherever_chunks_are_cut(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(text_stream, "TEXT_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    cases = [b"", b"\n", b"\r\n", b"\n\n", b"a\n\r\n\nb", b"a\r\n\r\nb\r\n", b"a\nb", b"x\n\r"]
    cases += [bytes(rng.choice(b"ab\n\r") for _ in range(rng.randrange(40))) for _ in range(300)]
    for data in cases:
        out, blank, lines = _read_all(data)
        assert out == data
        assert blank == _blank_lines(data), data
        assert lines == data.count(b"\n")
