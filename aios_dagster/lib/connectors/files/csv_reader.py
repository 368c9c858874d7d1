"""CSV files: pyarrow's streaming parser over validated text, every column read as text.

Values arrive as strings so a bad value becomes a contract failure on that record instead of a
type error for the whole file. A row with too few or too many fields is rejected with rule
``column_count`` and its raw text; the other rows continue. Columns are named from each file's
header, so a file with extra or missing columns passes through as read and the runtime reports
the schema drift by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv

from aios_dagster.lib.connectors.files.batching import Batcher, Piece
from aios_dagster.lib.connectors.files.text_stream import TextStream
from aios_dagster.lib.connectors.source import Reject

#: Opens the file as text; the argument (if any) is told the number of each empty line.
OpenText = Callable[[Callable[[int], None] | None], TextStream]


class CsvLines:
    """Maps pyarrow's CSV record numbers to physical line numbers.

    pyarrow numbers records from 1 (the header) and skips empty lines; invalid rows keep their
    number but are not in the output. Empty lines are reported by ``TextStream``. The physical
    line is exact unless a quoted value before it contains a newline (then it is the record
    count plus empty lines: still the right order, a few lines early). Old Mac '\\r'-only line
    endings are not counted as lines.
    """

    def __init__(self) -> None:
        self.blank: list[int] = []
        self.invalid: list[int] = []
        self._next_record = 2  # the first data record
        self._invalid_i = 0
        self._blank_j = 0
        self._reject_j = 0

    def _physical(self, record: int, j: int) -> tuple[int, int]:
        blank = self.blank
        while j < len(blank) and blank[j] <= record + j:
            j += 1
        return record + j, j

    def line_of(self, record: int) -> int:
        """Physical line of an invalid record (called in increasing record order)."""
        line, self._reject_j = self._physical(record, self._reject_j)
        return line

    def next_lines(self, count: int) -> list[int]:
        """Physical lines of the next ``count`` valid records."""
        out: list[int] = []
        record, invalid = self._next_record, self.invalid
        while len(out) < count:
            while self._invalid_i < len(invalid) and invalid[self._invalid_i] < record:
                self._invalid_i += 1
            if self._invalid_i < len(invalid) and invalid[self._invalid_i] == record:
                record += 1
                self._invalid_i += 1
                continue
            stop = invalid[self._invalid_i] if self._invalid_i < len(invalid) else record + count
            take = min(count - len(out), stop - record)
            while take:
                _, self._blank_j = self._physical(record, self._blank_j)
                j = self._blank_j
                limit = self.blank[j] - j if j < len(self.blank) else record + take
                run = min(take, limit - record)
                out.extend(range(record + j, record + j + run))
                record += run
                take -= run
        self._next_record = record
        return out


def read_csv(
    open_text: OpenText, rel_path: str, batcher: Batcher, *, delimiter: str, block_size: int
) -> Iterator[Piece]:
    """Stream a CSV file as string columns named by its header, rejecting malformed rows.

    ``open_text`` opens the file as a ``TextStream`` (it is opened twice: once for the header);
    its argument receives the physical number of each empty line.
    """
    read_options = pa_csv.ReadOptions(
        use_threads=False,  # serial parsing is what gives invalid rows their numbers
        block_size=block_size,
        encoding="utf8",  # TextStream has already decoded and validated
    )
    # First pass over the first block only: pyarrow parses the header exactly as it will
    # parse the rows (quoting, delimiter), and the names let every column be read as text.
    with contextlib.closing(open_text(None)) as probe:
        try:
            header = pa_csv.open_csv(
                probe,
                read_options=read_options,
                parse_options=pa_csv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, invalid_row_handler=_skip
                ),
            )
        except (pa.ArrowException, OSError) as exc:
            if probe.error is not None:  # bad bytes before the header was complete
                raise probe.error from exc
            if "Empty CSV file" not in str(exc):
                raise
            yield from batcher.finish("no header and no rows")
            return
        names = header.schema.names
        header.close()
    lines = CsvLines()

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        line = lines.line_of(row.number) if row.number is not None else None
        if row.number is not None:
            lines.invalid.append(row.number)
        where = f"line {line}" if line is not None else "line ?"
        batcher.reject(
            line, Reject(record=f"{rel_path}:{where}", rule="column_count", value=row.text)
        )
        return "skip"

    with (
        contextlib.closing(open_text(lines.blank.append)) as stream,
        contextlib.closing(
            pa_csv.open_csv(
                stream,
                read_options=read_options,
                parse_options=pa_csv.ParseOptions(
                    delimiter=delimiter,
                    newlines_in_values=True,  # quoted values may span lines in real exports
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=True,  # an empty cell is null, any other text is kept
                    null_values=[""],  # and only an empty cell: "NA" or "null" is text
                    check_utf8=False,
                ),
            )
        ) as reader,
    ):
        batcher.schema = reader.schema
        try:
            for record_batch in reader:
                yield from batcher.add(record_batch, lines.next_lines(record_batch.num_rows))
        except (pa.ArrowException, OSError) as exc:
            if stream.error is not None:
                raise stream.error from exc
            raise
        if stream.error is not None:
            raise stream.error
    yield from batcher.finish("header only, no data rows")


def _skip(_row: pa_csv.InvalidRow) -> str:
    return "skip"
