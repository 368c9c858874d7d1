"""One file's rows cut into batches, with each reject placed by its line.

Memory is bounded by ``batch_rows`` (plus the parser's block), never by the size of the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from aios_dagster.lib.connectors.files.text_stream import BadInput
from aios_dagster.lib.connectors.source import Reject


@dataclass
class Piece:
    table: pa.Table
    lines: list[int]
    rejects: list[Reject] = field(default_factory=list)


class Batcher:
    """Cuts one file's rows into ``batch_rows`` pieces and places each reject by its line.

    The cut points and reject placement depend only on the file and the config, so re-reading a
    file after a crash reproduces the same batches. One row is always held back until more rows
    or the end of the file arrive, so the last piece carries the file's trailing rejects.
    """

    def __init__(self, batch_rows: int, rel_path: str) -> None:
        self.batch_rows = batch_rows
        self.rel_path = rel_path
        self.emitted = 0
        self.schema: pa.Schema | None = None
        self._tables: list[pa.Table] = []
        self._lines: list[int] = []
        self._rows = 0
        self._rejects: list[tuple[int, Reject]] = []
        self._total_rows = 0
        self._total_rejects = 0
        self._last_line = 0  # line of the last row read so far

    def reject(self, line: int | None, reject: Reject) -> None:
        self._rejects.append((line if line is not None else 1 << 62, reject))
        self._total_rejects += 1

    def add(self, data: pa.Table | pa.RecordBatch, lines: list[int]) -> Iterator[Piece]:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        self.schema = table.schema
        if table.num_rows:
            self._tables.append(table)
            self._lines.extend(lines)
            self._last_line = lines[-1] if lines else self._last_line
            self._rows += table.num_rows
            self._total_rows += table.num_rows
        while self._rows > self.batch_rows:
            yield self._cut(self.batch_rows, final=False)

    def _cut(self, count: int, *, final: bool) -> Piece:
        tables = self._tables
        whole = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        # One contiguous array per column: every later step (masking, casting, the contract's
        # row picks) would otherwise copy the parser's blocks together itself, some of them
        # once per call; here it happens once, in the reader's thread.
        piece, rest = whole.slice(0, count).combine_chunks(), whole.slice(count)
        self._tables = [rest] if rest.num_rows else []
        lines, self._lines = self._lines[:count], self._lines[count:]
        self._rows -= count
        if final:
            rejects, self._rejects = [r for _, r in sorted(self._rejects, key=_line_key)], []
        else:
            last = lines[-1] if lines else 0
            mine = [(n, r) for n, r in self._rejects if n <= last]
            self._rejects = [(n, r) for n, r in self._rejects if n > last]
            rejects = [r for _, r in sorted(mine, key=_line_key)]
        self.emitted += 1
        return Piece(piece, lines, rejects)

    def _empty(self) -> pa.Table:
        return self.schema.empty_table() if self.schema is not None else pa.table({})

    def finish(self, empty: str = "no rows") -> Iterator[Piece]:
        """The file's last piece: remaining rows and every reject not placed yet.

        A file without a single row or reject is reported as ``empty_file`` (``empty`` says how
        it was empty), so a user sees that it arrived and was read.
        """
        if self._total_rows == 0 and self._total_rejects == 0:
            self.reject(None, Reject(record=self.rel_path, rule="empty_file", value=empty))
        if self._rows:
            yield self._cut(self._rows, final=True)
        else:
            rejects = [r for _, r in sorted(self._rejects, key=_line_key)]
            self._rejects = []
            self.emitted += 1
            yield Piece(self._empty(), [], rejects)

    def abort(self, problem: BadInput) -> Iterator[Piece]:
        """The rest of the file cannot be read (``problem.line`` is the first line not read).

        If the rows before the problem fit in one batch (no piece was cut yet: the usual small
        drop, or bad bytes from the start) the whole file is rejected and none of its rows land,
        so a fixed file dropped again lands exactly once. Otherwise the rows before the problem
        land and one reject covers the rest of the file. Either way the outcome depends only on
        the bytes and ``batch_rows``, so a re-read after a crash gives the same batches.
        """
        if self.emitted == 0:
            self._tables, self._lines, self._rows, self._rejects = [], [], 0, []
            self._total_rows = 0
            self.reject(None, Reject(record=self.rel_path, rule=problem.rule, value=problem.detail))
            self.schema = None
            yield from self.finish()
            return
        line = problem.line if problem.line is not None else self._last_line + 1
        where = f"line {line}"
        self.reject(
            line,
            Reject(
                record=f"{self.rel_path}:{where}",
                rule=problem.rule,
                value=f"{problem.detail}; the file was read up to that line, the rest was not",
            ),
        )
        yield from self.finish()


def _line_key(item: tuple[int, Reject]) -> int:
    return item[0]
