"""The http connector against a real local API: completeness, increments, retries and failures.

Each test reads the way the landing runtime does (every batch's cursor is what would be saved)
and asserts what a user would notice: records missing or duplicated, a run that hammers a
failing API, a run that retries what can never succeed, or an error that does not say where.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from aios_dagster.lib.connectors.http_source import HttpReader, HttpSourceConfig
from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    Reject,
    SourceBatch,
    TransientSourceError,
)
from tests.connectors.http_api import TicketApi


def make_reader(url: str, **overrides: Any) -> HttpReader:
    config: dict[str, Any] = {
        "url": url,
        "backoff_s": 0.01,
        "max_backoff_s": 5.0,
        "max_retries": 3,
        "timeout_s": 5.0,
        **overrides,
    }
    return HttpReader(HttpSourceConfig(**config))


def read(reader: HttpReader, cursor: Cursor | None = None) -> tuple[list[SourceBatch], list[dict]]:
    batches = list(reader.batches(cursor or {}))
    return batches, [row for b in batches for row in b.table.to_pylist()]


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


@pytest.mark.parametrize("pagination", ["cursor", "page"])
def test_every_record_is_read_exactly_once_in_order(http_api: TicketApi, pagination: str) -> None:
    reader = make_reader(http_api.url, pagination=pagination, page_size=100, pages_per_batch=3)
    batches, rows = read(reader)

    assert ids(rows) == [t["id"] for t in http_api.tickets()]
    assert len(set(ids(rows))) == 1000
    assert [b.table.num_rows for b in batches] == [300, 300, 300, 100]  # no empty trailing batch
    # Page mode learns the end from an empty page 11; cursor mode from a null next_cursor.
    assert len(http_api.requests) == (11 if pagination == "page" else 10)
    assert all(b.cursor["next"] is not None for b in batches[:-1])
    assert batches[-1].cursor == {"watermark": None, "next": None, "since": None}
    assert len({b.batch_id for b in batches}) == 4
    assert all(b.source == http_api.url for b in batches)
    assert batches[1].row_refs is not None
    assert batches[1].row_refs[0] == "page 4 item 0"

    # Every column is text; numbers keep their JSON spelling, so nothing is lost before conform.
    assert set(batches[0].table.schema.types) == {pa.string()}
    assert rows[3] == {
        "id": "T00003",
        "customer_email": "customer3@example.com",
        "subject": "Ticket 3: card question",
        "updated_at": "2024-01-01T00:01:00Z",
        "amount": "111.75",
    }

    # Reading the same pages again gives the same batch ids (the runtime rewrites, not appends).
    again, _ = read(make_reader(http_api.url, pagination=pagination, pages_per_batch=3))
    assert [b.batch_id for b in again] == [b.batch_id for b in batches]


def test_unpaginated_endpoint_keeps_query_from_url(http_api: TicketApi) -> None:
    reader = make_reader(http_api.url + "?page_size=2000", pagination="none")
    batches, rows = read(reader)

    assert len(batches) == 1
    assert ids(rows) == [t["id"] for t in http_api.tickets()]
    assert [r.params for r in http_api.requests] == [{"page_size": "2000"}]


def test_incremental_run_reads_only_changes_since_watermark(http_api: TicketApi) -> None:
    reader = make_reader(http_api.url, watermark_field="updated_at", pages_per_batch=4)
    first_batches, first_rows = read(reader)
    cursor = first_batches[-1].cursor
    watermark = max(r["updated_at"] for r in first_rows)
    assert cursor == {"watermark": watermark, "next": None, "since": None}

    later = "2024-02-01T00:00:00Z"
    http_api.touch(["T00010", "T00500"], later)
    added = http_api.add_tickets(3, later)
    http_api.clear_requests()
    batches, rows = read(reader, cursor)

    # Ties at the watermark (T00998 and T00999 share it) are re-read, never skipped.
    assert set(ids(rows)) == {"T00998", "T00999", "T00010", "T00500", *added}
    assert all(r["updated_at"] >= watermark for r in rows)
    assert {r["subject"] for r in rows if r["id"] in ("T00010", "T00500")} == {"updated"}
    assert http_api.requests[0].params["since"] == watermark
    assert batches[-1].cursor["watermark"] == later

    # Nothing changed since: only the boundary ties come back, and the probe says "nothing new".
    _, rows = read(reader, batches[-1].cursor)
    assert set(ids(rows)) == {"T00010", "T00500", *added}
    assert reader.has_new(batches[-1].cursor) is False


def test_has_new_probes_with_one_request(http_api: TicketApi) -> None:
    reader = make_reader(http_api.url, watermark_field="updated_at")
    assert reader.has_new({}) is True
    batches, _ = read(reader)
    cursor = batches[-1].cursor

    http_api.clear_requests()
    assert reader.has_new(cursor) is False  # only the two tickets tying at the watermark
    assert len(http_api.requests) == 1
    http_api.add_tickets(1, "2030-01-01T00:00:00Z")
    assert reader.has_new(cursor) is True
    assert make_reader(http_api.url).has_new({}) is True  # full-refresh reader: any record
    assert reader.has_new({**cursor, "next": "abc"}) is True  # an unfinished read


@pytest.mark.parametrize("pagination", ["cursor", "page"])
def test_reads_stopped_by_max_pages_or_a_crash_resume_without_gaps(
    http_api: TicketApi, pagination: str
) -> None:
    reader = make_reader(
        http_api.url,
        pagination=pagination,
        watermark_field="updated_at",
        max_pages=4,
        pages_per_batch=2,
    )
    # A crash after the first batch was landed: only its cursor was saved.
    run = reader.batches({})
    first = next(run)
    run.close()
    assert first.cursor["next"] is not None
    assert first.cursor["since"] is None  # the first read was unfiltered, and so is its resume
    landed = ids(first.table.to_pylist())

    cursor = first.cursor
    for _ in range(5):  # 1,000 records at 4 pages of 100 per run: 3 more runs
        batches, rows = read(reader, cursor)
        landed += ids(rows)
        cursor = batches[-1].cursor
        if cursor["next"] is None:
            break
    assert landed == [t["id"] for t in http_api.tickets()]
    assert cursor["watermark"] == http_api.tickets()[-1]["updated_at"]
    # Resumed reads kept the filter they started with (none), not the watermark seen so far.
    assert not any("since" in r.params for r in http_api.requests)


def test_pages_read_before_a_failure_are_still_handed_over(http_api: TicketApi) -> None:
    reader = make_reader(http_api.url, pages_per_batch=3, max_retries=1)
    http_api.fail_next(100, 500, after=3)
    got: list[SourceBatch] = []
    with pytest.raises(TransientSourceError):
        got.extend(reader.batches({}))
    assert [b.table.num_rows for b in got] == [300]

    http_api.clear_faults()
    _, rest = read(reader, got[0].cursor)
    assert ids(got[0].table.to_pylist()) + ids(rest) == [t["id"] for t in http_api.tickets()]


def test_transient_500s_are_retried_and_counted(http_api: TicketApi) -> None:
    http_api.fail_next(2, 500)
    reader = make_reader(http_api.url)
    _, rows = read(reader)

    assert len(set(ids(rows))) == 1000
    assert reader.stats.retries == 2
    assert reader.stats.requests == 12
    assert [r.status for r in http_api.requests[:3]] == [500, 500, 200]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(http_api: TicketApi, status: int) -> None:
    http_api.fail_next(1, status, retry_after="1")
    reader = make_reader(http_api.url)
    _, rows = read(reader)

    first, second = http_api.requests[:2]
    assert first.status == status
    assert second.at - first.at >= 1.0
    assert len(rows) == 1000
    assert reader.stats.retries == 1


def test_retry_after_longer_than_max_backoff_fails_the_run_without_waiting(
    http_api: TicketApi,
) -> None:
    http_api.fail_next(1, 429, retry_after="120")
    reader = make_reader(http_api.url, max_backoff_s=2.0)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="Retry-After 120s"):
        read(reader)
    assert time.monotonic() - started < 2.0
    assert len(http_api.requests) == 1


def test_a_timeout_is_retried(http_api: TicketApi) -> None:
    http_api.delay_next(1, 0.6)
    reader = make_reader(http_api.url, timeout_s=0.2)
    _, rows = read(reader)
    assert len(rows) == 1000
    assert reader.stats.retries == 1


@pytest.mark.parametrize(
    ("status", "path", "body"),
    [(404, "/v1/nope", "no such endpoint"), (401, "/v1/tickets", "injected 401")],
)
def test_client_errors_fail_at_once_naming_url_and_status(
    http_api: TicketApi, status: int, path: str, body: str
) -> None:
    if status == 401:
        http_api.fail_next(1, 401)
    reader = make_reader(http_api.base + path)
    with pytest.raises(PermanentSourceError) as caught:
        read(reader)

    assert len(http_api.requests) == 1  # never retried
    message = str(caught.value)
    assert f"{http_api.base}{path}?page_size=100" in message
    assert f"HTTP {status}" in message
    assert body in message


def test_html_instead_of_json_is_permanent_and_names_content_type(http_api: TicketApi) -> None:
    http_api.html_next()
    with pytest.raises(PermanentSourceError) as caught:
        read(make_reader(http_api.url))
    message = str(caught.value)
    assert "text/html" in message
    assert "502 Bad Gateway" in message
    assert len(http_api.requests) == 1


def test_page_without_the_records_list_is_permanent(http_api: TicketApi) -> None:
    with pytest.raises(PermanentSourceError, match=r"records_path 'data\.tickets'.*items"):
        read(make_reader(http_api.url, records_path="data.tickets"))


def test_persistent_500_gives_up_after_max_retries(http_api: TicketApi) -> None:
    http_api.fail_next(100, 500)
    reader = make_reader(http_api.url, max_retries=3)
    with pytest.raises(TransientSourceError) as caught:
        read(reader)

    assert len(http_api.requests) == 4
    message = str(caught.value)
    assert http_api.url in message
    assert "4 attempt(s)" in message
    assert "HTTP 500" in message


def test_non_object_item_is_rejected_and_the_page_kept(http_api: TicketApi) -> None:
    http_api.corrupt_next(3, "oops")
    batches, rows = read(make_reader(http_api.url, pages_per_batch=1))

    assert batches[0].rejects == [Reject("page 1 item 3", "not_an_object", '"oops"')]
    assert batches[0].table.num_rows == 100
    assert batches[0].row_refs is not None
    assert batches[0].row_refs[2:4] == ["page 1 item 2", "page 1 item 4"]
    assert len(set(ids(rows))) == 1000


def test_client_side_rate_limit_spaces_requests(http_api: TicketApi) -> None:
    _, rows = read(make_reader(http_api.url, max_requests_per_s=20))
    times = [r.at for r in http_api.requests]
    assert len(times) == 10
    assert len(rows) == 1000
    # 9 gaps of 1/20 s, seen at the server: arrival times jitter by milliseconds under load.
    assert times[-1] - times[0] >= 0.40


def test_connection_refused_is_transient_and_names_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/tickets"
    reader = make_reader(url, max_retries=2)
    with pytest.raises(TransientSourceError) as caught:
        read(reader)
    message = str(caught.value)
    assert url in message
    assert "3 attempt(s)" in message
    assert "ConnectError" in message
    assert reader.stats.requests == 3


def test_secrets_stay_out_of_descriptions_and_errors(http_api: TicketApi) -> None:
    reader = make_reader(
        http_api.url + "?api_key=s3cret&team=a", headers={"Authorization": "Bearer tok-123"}
    )
    assert reader.describe() == http_api.url + "?api_key=***&team=a"
    batches, rows = read(reader)
    assert len(rows) == 1000
    assert http_api.requests[0].headers["Authorization"] == "Bearer tok-123"
    assert "s3cret" not in batches[0].source

    http_api.fail_next(1, 403)
    with pytest.raises(PermanentSourceError) as caught:
        read(reader)
    assert "s3cret" not in str(caught.value)
    assert "tok-123" not in str(caught.value)
    assert "HTTP 403" in str(caught.value)


def test_config_rejects_unknown_keys_and_non_http_urls() -> None:
    with pytest.raises(ValidationError, match="page_sise"):
        HttpSourceConfig(url="http://x/y", page_sise=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="http"):
        HttpSourceConfig(url="ftp://x/y")


def test_request_timeout_408_is_retried_like_429(http_api: TicketApi) -> None:
    """408 says the server gave up waiting for the request: asking again can succeed."""
    http_api.fail_next(2, 408)
    reader = make_reader(http_api.url)
    _, rows = read(reader)
    assert len(rows) == 1000
    assert [r.status for r in http_api.requests[:3]] == [408, 408, 200]
    assert reader.stats.retries == 2


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_other_client_errors_are_never_retried(http_api: TicketApi, status: int) -> None:
    http_api.fail_next(1, status)
    reader = make_reader(http_api.url, backoff_s=5.0)
    started = time.monotonic()
    with pytest.raises(PermanentSourceError, match=f"HTTP {status}"):
        read(reader)
    assert time.monotonic() - started < 2.0
    assert len(http_api.requests) == 1
    assert reader.stats.retries == 0


def test_each_retry_is_logged_naming_the_source(
    http_api: TicketApi, caplog: pytest.LogCaptureFixture
) -> None:
    http_api.fail_next(2, 503)
    reader = make_reader(http_api.url)
    with caplog.at_level(logging.WARNING):
        read(reader)
    logged = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(logged) == 2
    assert all(m.startswith(f"{http_api.url}: GET {http_api.url}") for m in logged)
    assert "HTTP 503" in logged[0]


def test_retries_stop_at_the_total_time_budget(http_api: TicketApi) -> None:
    """An API that keeps failing ends the run within ``retry_total_s``, whatever max_retries."""
    http_api.fail_next(10_000, 500)
    reader = make_reader(
        http_api.url, max_retries=1_000, backoff_s=0.05, max_backoff_s=0.2, retry_total_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match=r"gave up after \d+ attempt\(s\)"):
        read(reader)
    assert time.monotonic() - started < 1.0 + 1.0
    assert 2 <= len(http_api.requests) < 100
