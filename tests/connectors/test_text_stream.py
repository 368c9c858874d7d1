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


def _stream_outcome(data: bytes) -> tuple[bytes, str | None, int | None, str]:
    stream = TextStream(io.BytesIO(data), "utf-8")
    out = b""
    while piece := stream.read(5):
        out += piece
    error = stream.error
    return out, error and error.rule, error and error.line, error.detail if error else ""


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 64])
def test_the_fast_utf8_check_agrees_with_the_decoder_wherever_chunks_are_cut(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid text comes out byte for byte; bad bytes give the same rule, line, detail and good
    prefix as Python's strict decoder does (the slow path, forced here for the reference)."""
    monkeypatch.setattr(text_stream, "TEXT_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    good = ["a", "\n", ",", "é", "€", "𝄞", "ß\n", "中文"]
    bad = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]
    cases = []
    for _ in range(400):
        parts = [rng.choice(good).encode() for _ in range(rng.randrange(1, 30))]
        if rng.random() < 0.4:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(bad))
        cases.append(b"".join(parts))
    fast = {data: _stream_outcome(data) for data in cases}
    monkeypatch.setattr(text_stream, "_is_utf8", lambda _data: False)
    for data, outcome in fast.items():
        assert outcome == _stream_outcome(data), data
        if outcome[1] is None:
            assert outcome[0] == data
    assert sum(outcome[1] == "undecodable" for outcome in fast.values()) > 50
