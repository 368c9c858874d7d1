"""HTTP connector: the pages of a JSON REST API become batches of rows.

The reader only knows HTTP and JSON; PII, contracts, Parquet and saving the cursor belong to the
runtime (see ``connectors.source``). What this module decides, and why:

* **Errors.** Connection errors, timeouts, HTTP 408, 429 and 5xx are retried through the shared
  policy (``aios_dagster.lib.retry``: exponential backoff plus jitter, bounded in attempts and
  time, honouring ``Retry-After``); when retries run out the run fails with
  ``TransientSourceError`` and the next run resumes from the last durable cursor. Any other
  4xx, a 200 that is not JSON (a proxy's HTML error page) or a page without the configured list
  is a ``PermanentSourceError``, raised at once: asking again cannot help, a person must fix the
  URL, the credentials or the config. Messages name the URL (query secrets
  redacted), the status and the start of the body, because that is what the person needs.
* **Bad records.** An item of the page list that is not a JSON object becomes a ``Reject``
  (``page N item I``, 0-based index into the page's list); the rest of the page is landed.
* **Columns.** Every column is a nullable string: JSON strings as they are, numbers and booleans
  as their JSON text (``12.5``, ``true``), objects and lists as JSON text. APIs change a value's
  JSON type between pages (``1`` then ``1.5`` then ``"n/a"``), which would make Arrow inference
  fail or flip types between batches; the runtime's ``conform`` casts text to the declared
  schema and quarantines values that do not parse, so nothing is lost by landing text.
* **Cursor.** ``{"watermark": W, "next": P, "since": S}``. ``W`` is the largest value of
  ``watermark_field`` seen so far (never moves backwards) and becomes ``since_param`` of the
  next read; the API must filter with inclusive ``>=`` semantics, so records sharing the boundary
  timestamp are read again rather than skipped (dedup downstream drops the repeats). ``P`` is the
  pagination position (cursor token or page number) where an unfinished read stopped, either at
  ``max_pages`` or between two batches of one read (the runtime saves every batch's cursor, and a
  crash between batches must resume, not restart past unread pages); ``S`` is the ``since`` that
  read used, because a position only means something under the filter that produced it. When a
  read reaches the end, ``next`` and ``since`` are ``None``. Watermarks compare as numbers when
  they are JSON numbers, as instants when they parse as ISO 8601 (naive ones taken as UTC, so
  ``Z`` and ``+00:00`` agree), otherwise as strings.
* **Batch ids** hash the URL, the ``since``, the starting position, the page count and the
  records: reading the same pages again gives the same id (the runtime rewrites that part), and
  a part is never overwritten by different records.

Offset (``page``) pagination cannot be resumed exactly if the filtered result set changes
between two runs (an update moves a record and shifts later ones back a position); prefer
``cursor`` pagination, or a ``watermark_field`` with the API sorting ascending by it, for large
mutable collections. A short page ends a ``page`` read, so ``page_size`` must not exceed the
API's maximum page size.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    Reject,
    SourceBatch,
    SourceError,
    TransientSourceError,
)
from aios_dagster.lib.retry import RetryPolicy, RetryStats, call_with_retry

BODY_CHARS = 200
"""How much of a response body an error message quotes: enough to recognise it, not a dump."""

# Besides 5xx: too many requests, and a request the server gave up waiting for. Every other
# 4xx is about the request itself, so repeating it cannot help.
_TRANSIENT_STATUS = frozenset({408, 429})
_SECRET_PARAM = re.compile(r"token|key|secret|passw|pwd|sig|auth|credential|session", re.I)

Position = str | int | None
"""Where a read is in the API's pagination: a cursor token, a page number, or the start."""


class HttpSourceConfig(BaseModel):
    """One JSON REST endpoint, as declared under ``source:`` of an ``http`` connector."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base endpoint, e.g. https://api.example.com/v1/tickets.")
    records_path: str = Field(
        default="items",
        description="Dotted key of the list of records in each page ('' = the page is the list).",
    )
    pagination: Literal["cursor", "page", "none"] = "cursor"
    next_cursor_path: str = Field(
        default="next_cursor", description="Dotted key of the next token; missing/null ends."
    )
    cursor_param: str = "cursor"
    page_param: str = "page"
    first_page: int = 1
    page_size_param: str | None = Field(
        default="page_size", description="Query param for the page size (cursor and page modes)."
    )
    page_size: int = Field(default=100, gt=0)
    watermark_field: str | None = Field(
        default=None, description="Record field (e.g. updated_at) that makes pulls incremental."
    )
    since_param: str = Field(
        default="since", description="Query param carrying the watermark; API filters with >=."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles after.")
    max_backoff_s: float = Field(
        default=60.0, ge=0, description="Longest wait; a longer Retry-After fails the run."
    )
    retry_total_s: float = Field(
        default=300.0,
        gt=0,
        description="No retry of a request starts later than this after its first try.",
    )
    max_requests_per_s: float | None = Field(default=None, gt=0)
    pages_per_batch: int = Field(default=10, gt=0)
    max_pages: int = Field(default=1000, gt=0, description="Safety cap on pages per read.")

    @model_validator(mode="after")
    def _consistent(self) -> HttpSourceConfig:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"http source url must be http(s)://..., got {redact_url(self.url)}")
        return self


@dataclass
class HttpStats:
    """Counters over the reader's lifetime, for run metadata and tests (retries are invisible
    otherwise: a run that needed 40 retries looks exactly like one that needed none)."""

    requests: int = 0
    retry: RetryStats = field(default_factory=RetryStats)
    pages: int = 0
    records: int = 0
    rejects: int = 0

    @property
    def retries(self) -> int:
        return self.retry.retries


@dataclass(frozen=True)
class _Page:
    number: int  # the page param in "page" mode, else the ordinal within this read (1-based)
    position: Position  # the position that fetched it
    items: list[Any]
    next: Position  # None at the end of the collection


def redact_url(url: str) -> str:
    """The URL without user info, fragment, or values of secret-looking query params."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = [
        (k, "***" if _SECRET_PARAM.search(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, host, parts.path, urlencode(query, safe="*:,"), ""))


def _dig(doc: Any, dotted: str) -> tuple[bool, Any]:
    """Follow a dotted key; ``(False, None)`` when any step is missing."""
    if not dotted:
        return True, doc
    for key in dotted.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return False, None
        doc = doc[key]
    return True, doc


def _body_start(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = response.content.decode("utf-8", "replace")
    return " ".join(text[:BODY_CHARS].split())


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def watermark_key(value: Any) -> tuple[int, Any] | None:
    """Sort key for a watermark value; ``None`` for values that cannot be a watermark."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (0, float(value))
    text = str(value)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return (2, text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return (1, instant)


def _later(a: Any, b: Any) -> Any:
    """The later of two watermarks (either may be None)."""
    ka, kb = watermark_key(a), watermark_key(b)
    if ka is None:
        return b if kb is not None else None
    if kb is None:
        return a
    return b if kb > ka else a


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def records_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """All-string table over the union of the rows' keys, in first-seen order.

    ``from_pylist`` would take the columns of the first row only; a key that appears from row
    two on (an optional field) would be silently dropped.
    """
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, None)
    schema = pa.schema([(name, pa.string()) for name in columns])
    return pa.Table.from_pylist(
        [{name: _text(row.get(name)) for name in columns} for row in rows], schema=schema
    )


class HttpReader:
    """Reads one configured JSON endpoint page by page; see the module docstring for rules."""

    def __init__(self, config: HttpSourceConfig) -> None:
        self.config = config
        self.stats = HttpStats()
        self._source = redact_url(config.url)
        self._interval = 1.0 / config.max_requests_per_s if config.max_requests_per_s else 0.0
        self._next_slot = 0.0
        self._retry_policy = RetryPolicy(
            attempts=config.max_retries + 1,
            first_wait_s=config.backoff_s,
            max_wait_s=config.max_backoff_s,
            total_s=config.retry_total_s,
        )

    def describe(self) -> str:
        return self._source

    @property
    def retry_stats(self) -> RetryStats:
        """Retries over this reader's life, for run metadata (as every retrying reader has)."""
        return self.stats.retry

    # -- reading -----------------------------------------------------------------------------

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        """Yield one batch per ``pages_per_batch`` pages, each with the cursor after it.

        A read that finds nothing new and leaves the cursor as it was yields nothing. The one
        batch that can have no rows (and no columns) is a cursor-only move: a read resumed at a
        saved ``next`` position that turns out to be the end of the collection, which must
        still clear ``next``. If a request fails after a full batch was read, that batch is
        yielded first and the error raised on the following ``next()``.
        """
        c = self.config
        watermark = cursor.get("watermark")
        if cursor.get("next") is not None:
            since, position = cursor.get("since"), cursor["next"]
        else:
            since, position = (watermark if c.watermark_field else None), self._start()
        # A read that finds nothing and moves nothing yields no batch (no empty parts).
        unchanged: Cursor = {
            "watermark": watermark,
            "next": cursor.get("next"),
            "since": since if cursor.get("next") is not None else None,
        }
        pending: list[_Page] = []
        pages_read = 0
        batch_start = position
        with self._client() as client:
            pages = self._pages(client, since, position)
            page: _Page | None = next(pages, None)
            while page is not None:
                pending.append(page)
                pages_read += 1
                end = page.next is None
                at_cap = pages_read >= c.max_pages
                if not (end or at_cap or len(pending) >= c.pages_per_batch):
                    page = next(pages, None)
                    continue
                following: _Page | None = None
                if not (end or at_cap):
                    # Peek one page so that an empty last page (a full page then an empty one in
                    # "page" mode) closes this batch instead of becoming a batch of no rows.
                    try:
                        following = next(pages, None)
                    except SourceError:
                        batch, watermark = self._batch(pending, since, batch_start, watermark)
                        if batch.table.num_rows or batch.rejects:
                            yield batch  # land what was read before the failure, then fail
                        raise
                    if following is not None and not following.items and following.next is None:
                        pending.append(following)
                        pages_read += 1
                        following, end = None, True
                batch, watermark = self._batch(pending, since, batch_start, watermark)
                if batch.table.num_rows or batch.rejects or batch.cursor != unchanged:
                    yield batch
                if end or at_cap:
                    return
                pending, batch_start, page = [], batch.cursor["next"], following

    def has_new(self, cursor: Cursor) -> bool:
        """Whether a read from ``cursor`` would find a record newer than its watermark.

        Ties at the watermark are returned again by the inclusive ``since`` filter and are not
        new; if a whole page is ties the next page is checked too (bounded by ``max_pages``).
        Without a watermark any record counts, so a single-record page is enough.
        """
        c = self.config
        if cursor.get("next") is not None:
            return True  # an unfinished read
        watermark = cursor.get("watermark")
        incremental = c.watermark_field is not None and watermark is not None
        page_size = None if incremental else 1
        with self._client() as client:
            pages = self._pages(
                client, watermark if incremental else None, self._start(), page_size
            )
            for checked, page in enumerate(pages, start=1):
                if not incremental:
                    return bool(page.items)
                floor = watermark_key(watermark)
                keys = [
                    watermark_key(item.get(c.watermark_field))
                    for item in page.items
                    if isinstance(item, dict)
                ]
                if any(k is not None and floor is not None and k > floor for k in keys):
                    return True
                if not page.items or any(k != floor for k in keys) or checked >= c.max_pages:
                    return False
        return False

    # -- internals ---------------------------------------------------------------------------

    def _start(self) -> Position:
        return self.config.first_page if self.config.pagination == "page" else None

    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json", **self.config.headers}
        return httpx.Client(
            headers=headers, timeout=httpx.Timeout(self.config.timeout_s), follow_redirects=True
        )

    def _params(self, since: Any, position: Position, page_size: int | None) -> dict[str, str]:
        c = self.config
        params: dict[str, str] = {}
        if c.watermark_field and since is not None:
            params[c.since_param] = str(since)
        if c.pagination != "none" and c.page_size_param:
            params[c.page_size_param] = str(page_size or c.page_size)
        if c.pagination == "cursor" and position is not None:
            params[c.cursor_param] = str(position)
        elif c.pagination == "page":
            params[c.page_param] = str(position)
        return params

    def _pages(
        self,
        client: httpx.Client,
        since: Any,
        position: Position,
        page_size: int | None = None,
    ) -> Iterator[_Page]:
        """Every page from ``position`` to the end of the collection (the caller caps)."""
        c = self.config
        ordinal = 0
        while True:
            ordinal += 1
            number = int(position) if c.pagination == "page" and position is not None else ordinal
            # httpx replaces a URL's own query with ``params``; merging keeps static params
            # written into the configured URL (an API version, a filter, a page size).
            query_url = httpx.URL(c.url).copy_merge_params(self._params(since, position, page_size))
            request = client.build_request("GET", query_url)
            url = redact_url(str(request.url))
            doc = self._get_json(client, request, url, f"page {number}")
            found, items = _dig(doc, c.records_path)
            if not found or not isinstance(items, list):
                what = f"a {type(items).__name__}" if found else "nothing"
                keys = f" (top-level keys: {sorted(doc)[:20]})" if isinstance(doc, dict) else ""
                raise PermanentSourceError(
                    self._source,
                    f"page {number}",
                    f"GET {url}: expected a list at records_path {c.records_path!r}, "
                    f"found {what}{keys}",
                )
            self.stats.pages += 1
            nxt = self._next_position(doc, position, items, url, number)
            yield _Page(number, position, items, nxt)
            if nxt is None:
                return
            position = nxt

    def _next_position(
        self, doc: Any, position: Position, items: list[Any], url: str, number: int
    ) -> Position:
        c = self.config
        if c.pagination == "none":
            return None
        if c.pagination == "page":
            if len(items) < c.page_size:
                return None
            return int(position if position is not None else c.first_page) + 1
        _, token = _dig(doc, c.next_cursor_path)
        if token is None or token == "":
            return None
        if not isinstance(token, str | int) or isinstance(token, bool):
            raise PermanentSourceError(
                self._source,
                f"page {number}",
                f"GET {url}: {c.next_cursor_path!r} is a {type(token).__name__}, not a token",
            )
        if str(token) == str(position):
            # The API handed back the token it was given: following it would loop forever.
            raise PermanentSourceError(
                self._source, f"page {number}", f"GET {url}: next cursor repeats {token!r}"
            )
        return str(token)

    def _throttle(self) -> None:
        """Client-side rate limit: request starts at least ``1/max_requests_per_s`` apart."""
        if not self._interval:
            return
        now = time.monotonic()
        if self._next_slot > now:
            time.sleep(self._next_slot - now)
            now = time.monotonic()
        self._next_slot = max(now, self._next_slot) + self._interval

    def _get_json(self, client: httpx.Client, request: httpx.Request, url: str, where: str) -> Any:
        """One logical GET: retried while transient, parsed as JSON, classified otherwise."""
        return call_with_retry(
            lambda: self._attempt(client, request, url, where),
            policy=self._retry_policy,
            source=self._source,
            what=f"GET {url}",
            stats=self.stats.retry,
        )

    def _attempt(self, client: httpx.Client, request: httpx.Request, url: str, where: str) -> Any:
        self._throttle()
        self.stats.requests += 1
        try:
            response = client.send(request)
        except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.DecodingError) as exc:
            raise PermanentSourceError(
                self._source, where, f"GET {url}: {type(exc).__name__}: {exc}"
            ) from exc
        except httpx.TransportError as exc:  # connect/read/write errors, timeouts, resets
            raise TransientSourceError(
                self._source, where, f"{type(exc).__name__}: {str(exc) or 'no detail'}"
            ) from exc
        status = response.status_code
        phrase = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status in _TRANSIENT_STATUS or status >= 500:
            retry_after = _retry_after(response) if status in (429, 503) else None
            hint = f" (Retry-After {retry_after:.0f}s)" if retry_after is not None else ""
            raise TransientSourceError(
                self._source,
                where,
                f"{phrase}: {_body_start(response)}{hint}",
                retry_after=retry_after,
            )
        if not 200 <= status < 300:
            raise PermanentSourceError(
                self._source, where, f"GET {url} -> {phrase}: {_body_start(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:  # JSONDecodeError and undecodable bytes
            content_type = response.headers.get("content-type", "no content-type")
            raise PermanentSourceError(
                self._source,
                where,
                f"GET {url} -> {phrase} but the body is not JSON "
                f"(content-type {content_type}): {_body_start(response)}",
            ) from exc

    def _batch(
        self, pages: list[_Page], since: Any, start: Position, watermark: Any
    ) -> tuple[SourceBatch, Any]:
        """Rows, rejects and the cursor after ``pages``; returns the new watermark too."""
        c = self.config
        rows: list[dict[str, Any]] = []
        refs: list[str] = []
        rejects: list[Reject] = []
        for page in pages:
            for i, item in enumerate(page.items):
                where = f"page {page.number} item {i}"
                if isinstance(item, dict):
                    rows.append(item)
                    refs.append(where)
                    if c.watermark_field:
                        watermark = _later(watermark, item.get(c.watermark_field))
                else:
                    rejects.append(
                        Reject(where, "not_an_object", json.dumps(item, ensure_ascii=False))
                    )
        self.stats.records += len(rows)
        self.stats.rejects += len(rejects)
        nxt = pages[-1].next
        cursor: Cursor = {
            "watermark": watermark,
            "next": nxt,
            "since": since if nxt is not None else None,
        }
        identity = json.dumps(
            {
                "url": c.url,
                "records_path": c.records_path,
                "since": since,
                "start": start,
                "pages": len(pages),
                "items": [p.items for p in pages],
            },
            sort_keys=True,
            default=str,
        )
        batch = SourceBatch(
            sparse=True,
            table=records_to_table(rows),
            batch_id=hashlib.sha256(identity.encode()).hexdigest()[:32],
            source=self._source,
            cursor=cursor,
            rejects=rejects,
            row_refs=refs,
        )
        return batch, watermark
