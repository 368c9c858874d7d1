"""The ``files`` connector kind: a drop folder read once per file version, whatever lands in it.

Every test looks at what a user of the landing runtime would notice: which rows arrive, which
records are quarantined and with what rule, what a second run reads, and what a crash costs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from aios_dagster.lib.connectors.files_source import (
    FileListing,
    FilesReader,
    FilesSourceConfig,
    list_new_files,
    mark_ingested,
)
from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    SourceBatch,
    TransientSourceError,
)
from aios_dagster.lib.retry import RetryPolicy

COLUMNS = ["id", "name", "city", "amount"]
ROWS: list[dict[str, Any]] = [
    {"id": "1", "name": "Ann Lee", "city": "Zürich", "amount": "12.50"},
    {"id": "2", "name": 'Bob "the builder"', "city": "Oslo, NO", "amount": "7"},
    {"id": "3", "name": "Cé Dupont", "city": None, "amount": "0.10"},
    {"id": "4", "name": "Dan", "city": "Rome", "amount": "-3"},
    {"id": "5", "name": "Eve", "city": "Lyon", "amount": "99.99"},
]


def csv_bytes(rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return buffer.getvalue().encode()


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in COLUMNS])), buffer
    )
    return buffer.getvalue()


def write(folder: Path, name: str, data: bytes, *, age_s: float | None = None) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s is not None:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def read_all(reader: FilesReader, cursor: Cursor | None = None) -> tuple[list[SourceBatch], Cursor]:
    """One connector run: every batch, and the cursor the runtime would have saved last."""
    batches = list(reader.batches(cursor or {}))
    return batches, (batches[-1].cursor if batches else (cursor or {}))


def rows_of(batches: list[SourceBatch]) -> list[dict[str, Any]]:
    return [row for b in batches for row in b.table.to_pylist()]


def rejects_of(batches: list[SourceBatch]) -> list[tuple[str, str, str | None]]:
    return [(r.record, r.rule, r.value) for b in batches for r in b.rejects]


def reader_for(url: str | Path, **options: Any) -> FilesReader:
    return FilesReader(FilesSourceConfig(url=str(url), **options))


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def memory_drop() -> Iterator[str]:
    """A private folder on fsspec's in-memory filesystem (its store is process-wide)."""
    fs = fsspec.filesystem("memory")
    root = f"/drop-{uuid.uuid4().hex}"
    fs.mkdir(root)
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


# ---------------------------------------------------------------------------- each file once


def test_each_file_is_read_once_new_files_later_and_replaced_files_again(drop: Path) -> None:
    write(drop, "2026-01-01.csv", csv_bytes(ROWS[:2]))
    reader = reader_for(drop)

    first, cursor = read_all(reader)
    assert [r["id"] for r in rows_of(first)] == ["1", "2"]
    assert set(cursor["files"]) == {"2026-01-01.csv"}

    # A second run with the saved cursor reads nothing and the sensor probe agrees.
    assert not reader.has_new(cursor)
    assert read_all(reader, cursor)[0] == []

    # A new file is read, and only that file.
    write(drop, "2026-01-02.csv", csv_bytes(ROWS[2:4]))
    assert reader.has_new(cursor)
    second, cursor = read_all(reader, cursor)
    assert [r["id"] for r in rows_of(second)] == ["3", "4"]
    assert {b.source for b in second} == {(drop / "2026-01-02.csv").as_uri()}

    # A replaced file (same name, new content) is read again under new batch ids.
    old_ids = {b.batch_id for b in first}
    path = write(drop, "2026-01-01.csv", csv_bytes([ROWS[0], ROWS[4]]))
    later = time.time() + 5
    os.utime(path, (later, later))
    third, cursor = read_all(reader, cursor)
    assert [r["id"] for r in rows_of(third)] == ["1", "5"]
    assert not old_ids & {b.batch_id for b in third}
    assert read_all(reader, cursor)[0] == []


def test_files_are_read_in_path_order_and_max_files_per_run_caps_a_run(drop: Path) -> None:
    for day in ("03", "01", "02"):
        write(drop, f"2026-01-{day}.csv", csv_bytes([{**ROWS[0], "id": day}]))
    reader = reader_for(drop, max_files_per_run=2)

    first, cursor = read_all(reader)
    assert [r["id"] for r in rows_of(first)] == ["01", "02"]
    second, cursor = read_all(reader, cursor)
    assert [r["id"] for r in rows_of(second)] == ["03"]
    assert not reader.has_new(cursor)


def test_files_still_being_written_are_not_read(drop: Path) -> None:
    write(drop, "old.csv", csv_bytes(ROWS[:1]), age_s=3600)
    write(drop, "fresh.csv", csv_bytes(ROWS[1:2]))  # modified just now
    write(drop, "upload.csv.part", csv_bytes(ROWS[2:3]), age_s=3600)
    write(drop, "export.tmp", csv_bytes(ROWS[2:3]), age_s=3600)
    write(drop, ".~lock.old.csv", b"lock", age_s=3600)
    write(drop, "_SUCCESS", b"", age_s=3600)
    write(drop, "_temporary/0/part-0.csv", csv_bytes(ROWS[3:4]), age_s=3600)

    batches, cursor = read_all(reader_for(drop, min_age_s=60, pattern="**/*"))
    assert [r["id"] for r in rows_of(batches)] == ["1"]
    assert list(cursor["files"]) == ["old.csv"]

    # Once the writer is done (the file is old enough), it is read.
    later = FilesReader(
        FilesSourceConfig(url=str(drop), min_age_s=60), clock=lambda: time.time() + 120
    )
    batches, _ = read_all(later, cursor)
    assert [r["id"] for r in rows_of(batches)] == ["2"]


def test_the_listing_helper_is_usable_without_the_reader(memory_drop: str) -> None:
    """What the mailbox connector reuses: list, read, mark; the format does not matter."""
    fs = fsspec.filesystem("memory")
    root = memory_drop.removeprefix("memory://")
    fs.pipe(f"{root}/b.eml", b"Subject: b\n\nbody")
    fs.pipe(f"{root}/a.eml", b"Subject: a\n\nbody")
    fs.pipe(f"{root}/notes.txt", b"not mail")

    listing = FileListing.from_url(memory_drop, "*.eml")
    new = listing.new_files({})
    assert [f.rel_path for f in new] == ["a.eml", "b.eml"]
    with listing.open(new[0]) as handle:
        assert handle.read().startswith(b"Subject: a")

    cursor = mark_ingested({}, new[0])
    assert [f.rel_path for f in list_new_files(fs, root, "*.eml", cursor)] == ["b.eml"]
    assert new[1].batch_id(0) == new[1].batch_id(0) != new[0].batch_id(0)


# ---------------------------------------------------------------------------- formats, stores


def test_csv_jsonl_and_parquet_give_the_same_rows(tmp_path: Path) -> None:
    results = {}
    for name, data in {
        "rows.csv": csv_bytes(ROWS),
        "rows.jsonl": jsonl_bytes(ROWS),
        "rows.parquet": parquet_bytes(ROWS),
        "rows.csv.gz": gzip.compress(csv_bytes(ROWS)),
    }.items():
        folder = tmp_path / name.replace(".", "_")
        write(folder, name, data)
        batches, _ = read_all(reader_for(folder, batch_rows=2))
        assert rejects_of(batches) == []
        results[name] = rows_of(batches)
    assert all(rows == ROWS for rows in results.values()), results


def test_json_values_become_text_like_a_csv_cell(drop: Path) -> None:
    write(
        drop,
        "events.jsonl",
        b'{"id": 7, "amount": 1.50, "ok": true, "tags": ["a", 2], "meta": {"n": 1.0}, "x": null}\n',
    )
    batches, _ = read_all(reader_for(drop))
    assert rows_of(batches) == [
        {
            "id": "7",
            "amount": "1.50",
            "ok": "true",
            "tags": '["a",2]',
            "meta": '{"n":1.0}',
            "x": None,
        }
    ]


def test_a_memory_url_reads_the_same_as_a_local_path(drop: Path, memory_drop: str) -> None:
    fs = fsspec.filesystem("memory")
    files = {"a.csv": csv_bytes(ROWS[:3]), "b.jsonl": jsonl_bytes(ROWS[3:])}
    for name, data in files.items():
        write(drop, name, data)
        fs.pipe(f"{memory_drop.removeprefix('memory://')}/{name}", data)

    local, local_cursor = read_all(reader_for(drop, batch_rows=2))
    memory, memory_cursor = read_all(reader_for(memory_drop, batch_rows=2))
    assert rows_of(memory) == rows_of(local) == ROWS
    assert [b.row_refs for b in memory] == [b.row_refs for b in local]
    assert set(memory_cursor["files"]) == set(local_cursor["files"]) == set(files)
    assert memory[0].source == f"memory://{memory_drop.removeprefix('memory://')}/a.csv"
    assert read_all(reader_for(memory_drop), memory_cursor)[0] == []

    file_url = reader_for(f"file://{drop}")
    assert rows_of(read_all(file_url)[0]) == ROWS


# ---------------------------------------------------------------------------- crash safety


def test_a_crash_mid_file_rereads_that_file_with_the_same_batch_ids(drop: Path) -> None:
    write(drop, "a.csv", csv_bytes(ROWS[:2]))
    write(drop, "b.csv", csv_bytes(ROWS))  # 5 rows in batches of 2: three batches
    reader = reader_for(drop, batch_rows=2)

    batches, _ = read_all(reader)
    assert [b.table.num_rows for b in batches] == [2, 2, 2, 1]
    b_batches = batches[1:]
    # The file enters the cursor only with its last batch.
    assert [("b.csv" in b.cursor["files"]) for b in b_batches] == [False, False, True]
    assert all("a.csv" in b.cursor["files"] for b in b_batches)

    # The runtime landed b's first batch, saved its cursor, then crashed.
    again, cursor = read_all(reader, b_batches[0].cursor)
    assert [b.batch_id for b in again] == [b.batch_id for b in b_batches]
    assert rows_of(again) == ROWS
    assert [b.row_refs for b in again] == [b.row_refs for b in b_batches]
    assert read_all(reader, cursor)[0] == []


def test_a_storage_failure_is_transient_and_does_not_advance_past_the_file(
    drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(drop, "a.csv", csv_bytes(ROWS[:1]))
    write(drop, "b.csv", csv_bytes(ROWS[1:]))
    reader = reader_for(drop)
    real_open = reader.listing.fs.open

    class Flaky(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise ConnectionResetError("connection reset by peer")

    def flaky_open(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return Flaky() if path.endswith("b.csv") else real_open(path, mode, **kwargs)

    monkeypatch.setattr(reader.listing.fs, "open", flaky_open)
    landed: list[SourceBatch] = []
    with pytest.raises(TransientSourceError, match=r"b\.csv.*connection reset"):
        landed.extend(reader.batches({}))
    assert [list(b.cursor["files"]) for b in landed] == [["a.csv"]]

    monkeypatch.undo()
    batches, _ = read_all(reader, landed[-1].cursor)
    assert [r["id"] for r in rows_of(batches)] == ["2", "3", "4", "5"]


def test_a_flaky_listing_is_retried_and_permission_denied_is_not(
    drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(drop, "a.csv", csv_bytes(ROWS[:1]))
    reader = reader_for(drop)
    reader.listing.retry_policy = RetryPolicy(attempts=3, first_wait_s=0.0, jitter_s=0.0)
    real_glob = reader.listing.fs.glob
    calls: list[str] = []

    def glob(failures: list[OSError]) -> Any:
        def listing(path: str, **kwargs: Any) -> Any:
            calls.append(path)
            if failures:
                raise failures.pop(0)
            return real_glob(path, **kwargs)

        return listing

    monkeypatch.setattr(reader.listing.fs, "glob", glob([TimeoutError("slow"), OSError("503")]))
    batches, _ = read_all(reader)
    assert rows_of(batches) == ROWS[:1]
    assert len(calls) == 3

    calls.clear()
    monkeypatch.setattr(reader.listing.fs, "glob", glob([PermissionError("denied")] * 3))
    with pytest.raises(PermanentSourceError, match="permission denied"):
        reader.has_new({})
    assert len(calls) == 1

    calls.clear()
    monkeypatch.setattr(reader.listing.fs, "glob", glob([OSError("down")] * 3))
    with pytest.raises(TransientSourceError, match=r"listing the drop folder.*3 attempt"):
        reader.has_new({})
    assert len(calls) == 3


# ---------------------------------------------------------------------------- bad input


def test_empty_files_are_reported_and_count_as_ingested(drop: Path) -> None:
    write(drop, "a_empty.csv", b"")
    write(drop, "b_header_only.csv", b"id,name,city,amount\n")
    write(drop, "c_blank.jsonl", b"\n\n")
    write(drop, "d_good.csv", csv_bytes(ROWS))

    batches, cursor = read_all(reader_for(drop))
    assert rows_of(batches) == ROWS
    assert [(record, rule) for record, rule, _ in rejects_of(batches)] == [
        ("a_empty.csv", "empty_file"),
        ("b_header_only.csv", "empty_file"),
        ("c_blank.jsonl", "empty_file"),
    ]
    assert set(cursor["files"]) == {
        "a_empty.csv",
        "b_header_only.csv",
        "c_blank.jsonl",
        "d_good.csv",
    }
    header_only = next(b for b in batches if b.source.endswith("b_header_only.csv"))
    assert header_only.table.column_names == COLUMNS


def test_a_binary_file_with_a_csv_name_is_rejected_and_the_others_continue(drop: Path) -> None:
    write(drop, "a.csv", csv_bytes(ROWS[:2]))
    write(drop, "b.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 50)
    write(drop, "c.csv", b"PK\x03\x04" + os.urandom(2000))  # an .xlsx renamed to .csv
    write(drop, "d.csv", csv_bytes(ROWS[2:]))

    batches, cursor = read_all(reader_for(drop))
    assert rows_of(batches) == ROWS
    rejects = rejects_of(batches)
    assert [(record, rule) for record, rule, _ in rejects] == [
        ("b.csv", "binary_file"),
        ("c.csv", "binary_file"),
    ]
    assert "byte offset 8" in (rejects[0][2] or "")
    assert set(cursor["files"]) == {"a.csv", "b.csv", "c.csv", "d.csv"}


def test_a_file_in_the_wrong_encoding_is_rejected_naming_where(drop: Path) -> None:
    latin1 = "id,name,city,amount\n1,Ann,Zurich,1\n2,Cé Dupont,Paris,2\n".encode("latin-1")
    write(drop, "a_latin1.csv", latin1)
    write(drop, "b_latin1.jsonl", '{"id": "9", "name": "Renée"}\n'.encode("latin-1"))
    write(drop, "c_good.csv", csv_bytes(ROWS))

    batches, cursor = read_all(reader_for(drop))
    assert rows_of(batches) == ROWS  # no row of the latin-1 files, all rows of the good one
    (csv_record, csv_rule, csv_value), (json_record, json_rule, _) = rejects_of(batches)
    assert (csv_record, csv_rule) == ("a_latin1.csv", "undecodable")
    assert "byte offset 38 (line 3)" in (csv_value or "")
    assert "encoding" in (csv_value or "")
    assert (json_record, json_rule) == ("b_latin1.jsonl", "undecodable")
    assert set(cursor["files"]) == {"a_latin1.csv", "b_latin1.jsonl", "c_good.csv"}

    # Configured as latin-1, the same files read fine (and come out as proper text).
    batches, _ = read_all(reader_for(drop, encoding="latin-1", pattern="*latin1*"))
    assert rejects_of(batches) == []
    assert [r["name"] for r in rows_of(batches)] == ["Ann", "Cé Dupont", "Renée"]


def test_undecodable_bytes_deep_in_a_large_file_keep_what_was_landed(drop: Path) -> None:
    """Past the first batch, the rows before the bad line land and one reject covers the rest,
    the same way on every read (the outcome must not depend on pyarrow's read-ahead)."""
    good = csv_bytes([{**ROWS[0], "id": str(i)} for i in range(60_000)])  # ~1.6 MB
    write(drop, "big.csv", good + b"60000,Ren\xe9e,Paris,1\n60001,Ann,Rome,2\n")
    write(drop, "next.csv", csv_bytes(ROWS))
    reader = reader_for(drop, batch_rows=1_000, block_size_bytes=1 << 16)

    batches, cursor = read_all(reader)
    big = [b for b in batches if b.source.endswith("big.csv")]
    assert [r["id"] for r in rows_of(big)] == [str(i) for i in range(60_000)]
    [(record, rule, value)] = rejects_of(big)
    assert (record, rule) == ("big.csv:line 60002", "undecodable")
    assert "byte offset" in (value or "")
    assert rows_of(batches[len(big) :]) == ROWS
    assert set(cursor["files"]) == {"big.csv", "next.csv"}

    for _ in range(3):
        again, _ = read_all(reader)
        assert [(b.batch_id, b.table.num_rows) for b in again] == [
            (b.batch_id, b.table.num_rows) for b in batches
        ]


def test_csv_rows_with_the_wrong_number_of_fields_are_quarantined_by_line(drop: Path) -> None:
    data = (
        b"id,name,city,amount\n"
        b"1,Ann Lee,Z\xc3\xbcrich,12.50\n"
        b"2,Bob,Oslo\n"  # a field short
        b"\n"  # blank lines are skipped, and line numbers still match the file
        b"3,Cee,Paris,0.10,surplus\n"  # a field too many
        b"4,Dan,Rome,-3\n"
        b"5,Eve,Ly"  # truncated mid-row: the writer died
    )
    write(drop, "a.csv", data)
    write(drop, "b.csv", csv_bytes(ROWS[4:]))

    batches, cursor = read_all(reader_for(drop, batch_rows=1))
    assert [r["id"] for r in rows_of(batches)] == ["1", "4", "5"]
    assert rejects_of(batches) == [
        ("a.csv:line 3", "column_count", "2,Bob,Oslo"),
        ("a.csv:line 5", "column_count", "3,Cee,Paris,0.10,surplus"),
        ("a.csv:line 7", "column_count", "5,Eve,Ly"),
    ]
    refs = [ref for b in batches for ref in b.row_refs or []]
    assert refs == ["a.csv:line 2", "a.csv:line 6", "b.csv:line 2"]
    assert set(cursor["files"]) == {"a.csv", "b.csv"}


def test_a_header_with_other_columns_is_passed_through_by_name(drop: Path) -> None:
    write(drop, "a.csv", csv_bytes(ROWS[:1]))
    write(drop, "b.csv", csv_bytes(ROWS[1:2], ["id", "name", "amount", "country"]))
    write(drop, "c.csv", csv_bytes(ROWS[2:3], ["amount", "id", "name"]))

    batches, _ = read_all(reader_for(drop))
    assert [b.table.column_names for b in batches] == [
        COLUMNS,
        ["id", "name", "amount", "country"],
        ["amount", "id", "name"],
    ]
    assert batches[1].table.to_pylist() == [
        {"id": "2", "name": 'Bob "the builder"', "amount": "7", "country": None}
    ]
    assert rejects_of(batches) == []


def test_json_lines_that_are_not_objects_are_quarantined_by_line(drop: Path) -> None:
    lines = [
        json.dumps(ROWS[0]),
        "[1, 2]",
        "42",
        '{"id": "2", "name": "Bob"',  # cut off
        "",
        json.dumps(ROWS[1]),
        "not json at all",
        json.dumps(ROWS[2]),
    ]
    write(drop, "a.jsonl", ("\n".join(lines) + "\n").encode())

    batches, _ = read_all(reader_for(drop, batch_rows=2))
    assert [r["id"] for r in rows_of(batches)] == ["1", "2", "3"]
    assert [(record, rule) for record, rule, _ in rejects_of(batches)] == [
        ("a.jsonl:line 2", "not_an_object"),
        ("a.jsonl:line 3", "not_an_object"),
        ("a.jsonl:line 4", "not_json"),
        ("a.jsonl:line 7", "not_json"),
    ]
    assert [r for b in batches for r in b.row_refs or []] == [
        "a.jsonl:line 1",
        "a.jsonl:line 6",
        "a.jsonl:line 8",
    ]


def test_duplicate_ids_are_passed_through_for_the_contract(drop: Path) -> None:
    write(drop, "a.csv", csv_bytes([ROWS[0], ROWS[0], {**ROWS[0], "amount": "13"}]))
    batches, _ = read_all(reader_for(drop))
    assert [r["id"] for r in rows_of(batches)] == ["1", "1", "1"]
    assert rejects_of(batches) == []


def test_unreadable_parquet_and_unknown_formats_are_rejected_not_raised(drop: Path) -> None:
    write(drop, "a.parquet", parquet_bytes(ROWS[:2]))
    write(drop, "b.parquet", b"PAR1 this is not really parquet at all PAR1")
    write(drop, "c.xlsx", b"PK\x03\x04...")
    write(drop, "d.parquet", parquet_bytes(ROWS[2:]))

    batches, cursor = read_all(reader_for(drop))
    assert rows_of(batches) == ROWS
    assert [(record, rule) for record, rule, _ in rejects_of(batches)] == [
        ("b.parquet", "unparseable"),
        ("c.xlsx", "unknown_format"),
    ]
    assert next(b.row_refs for b in batches if b.table.num_rows) == [
        "a.parquet:row 1",
        "a.parquet:row 2",
    ]
    assert len(cursor["files"]) == 4


def test_a_missing_local_folder_fails_the_run_but_not_the_sensor(tmp_path: Path) -> None:
    reader = reader_for(tmp_path / "not-there-yet")
    assert not reader.has_new({})
    with pytest.raises(PermanentSourceError, match="does not exist"):
        list(reader.batches({}))


def test_config_rejects_what_it_does_not_know() -> None:
    with pytest.raises(ValidationError):
        FilesSourceConfig(url="/drop", path="/other")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="encoding"):
        FilesSourceConfig(url="/drop", encoding="klingon")
    with pytest.raises(ValidationError, match="delimiter"):
        FilesSourceConfig(url="/drop", delimiter=";;")
    reader = reader_for("memory://user:secret@host/drop")
    assert "secret" not in reader.describe()


# ---------------------------------------------------------------------------- huge files


def test_a_1gb_csv_streams_in_bounded_memory(tmp_path: Path) -> None:
    columns = [f"col_{i:02d}" for i in range(20)]
    block_rows = [
        ",".join([f"{r:08d}"] + [f"value_{(r * 7 + i) % 1000}" for i in range(1, 20)])
        for r in range(10_000)
    ]
    block = ("\n".join(block_rows) + "\n").encode()
    repeats = (1 << 30) // len(block) + 1
    path = tmp_path / "drop" / "huge.csv"
    path.parent.mkdir()
    try:
        with path.open("wb") as handle:
            handle.write((",".join(columns) + "\n").encode())
            for _ in range(repeats):
                handle.write(block)
        assert path.stat().st_size >= 1 << 30

        start_bytes = pa.total_allocated_bytes()
        peak = 0
        rows = 0
        batches = 0
        for batch in reader_for(path.parent).batches({}):
            rows += batch.table.num_rows
            batches += 1
            assert not batch.rejects
            peak = max(peak, pa.total_allocated_bytes() - start_bytes)
            del batch
        assert rows == repeats * len(block_rows)
        assert batches == -(-rows // 100_000)
        assert peak < 256 << 20, f"peak Arrow memory {peak / 2**20:.0f} MiB"
    finally:
        path.unlink(missing_ok=True)
