"""A real local ticket API for HTTP connector tests, with faults a test can switch on.

It is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) in a background thread, so the
reader is exercised over real sockets: timeouts, refused connections, headers and status codes
behave as they would against a production API. ``GET /v1/tickets`` serves a deterministic set of
tickets sorted by ``(updated_at, id)``:

* ``since=<iso>``: only tickets with ``updated_at >= since`` (inclusive, like most APIs);
* ``page=<n>`` (1-based) with ``page_size``: offset pagination;
* otherwise keyset cursor pagination: ``cursor=<token>`` from the previous ``next_cursor``.

Responses look like ``{"items": [...], "next_cursor": "..." | null, "page": n, "total": k}``.
Two tickets share each ``updated_at`` (i // 2 minutes after 2024-01-01), so watermark ties at a
batch boundary are part of every test.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
PATH = "/v1/tickets"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ticket(i: int, updated_at: str | None = None) -> dict[str, Any]:
    """The i-th ticket; everything derives from ``i`` so tests can predict values."""
    return {
        "id": f"T{i:05d}",
        "customer_email": f"customer{i}@example.com",
        "subject": f"Ticket {i}: card question",
        "updated_at": updated_at or iso(BASE_TIME + timedelta(minutes=i // 2)),
        "amount": round((i * 37) % 500 + 0.25 * (i % 4), 2),
    }


@dataclass
class Fault:
    """What the next request gets instead of (or before) its normal answer."""

    status: int = 500
    body: str = '{"error": "injected"}'
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering; with status 200 the normal answer follows


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() when the request arrived
    path: str  # path and query exactly as sent
    params: dict[str, str]
    headers: dict[str, str]
    status: int


class TicketApi:
    """The dataset, the fault queue and the request log; thread-safe."""

    def __init__(self, count: int = 1000) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, dict[str, Any]] = {}
        self._faults: deque[Fault | None] = deque()  # None: answer normally
        self._corrupt: deque[tuple[int, Any]] = deque()
        self._requests: list[Request] = []
        self._next_index = 0
        self.add_tickets(count)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TicketApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stall

            def do_GET(self) -> None:
                api.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base(self) -> str:
        assert self._server is not None, "start() the API first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base + PATH

    # -- data --------------------------------------------------------------------------------

    def add_tickets(self, count: int, updated_at: str | None = None) -> list[str]:
        with self._lock:
            ids = []
            for _ in range(count):
                t = ticket(self._next_index, updated_at)
                self._tickets[t["id"]] = t
                ids.append(t["id"])
                self._next_index += 1
            return ids

    def touch(self, ids: list[str], updated_at: str) -> None:
        """Update tickets (new subject and ``updated_at``), as an agent editing them would."""
        with self._lock:
            for tid in ids:
                self._tickets[tid] = {
                    **self._tickets[tid],
                    "subject": "updated",
                    "updated_at": updated_at,
                }

    def tickets(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._tickets.values(), key=lambda t: (t["updated_at"], t["id"]))

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self, n: int, status: int = 500, retry_after: str | None = None, after: int = 0
    ) -> None:
        """The next ``n`` requests (after ``after`` normal ones) answer ``status``."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._faults.extend(None for _ in range(after))
            self._faults.extend(
                Fault(status, f'{{"error": "injected {status}"}}', headers=headers)
                for _ in range(n)
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._corrupt.clear()

    def html_next(self, n: int = 1) -> None:
        body = "<html><head><title>502 Bad Gateway</title></head><body>proxy says hi</body></html>"
        with self._lock:
            self._faults.extend(Fault(200, body, "text/html; charset=utf-8") for _ in range(n))

    def delay_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults.extend(Fault(200, delay_s=seconds) for _ in range(n))

    def corrupt_next(self, index: int, value: Any) -> None:
        """Insert ``value`` (not an object) at ``index`` of the next successful page's items."""
        with self._lock:
            self._corrupt.append((index, value))

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- serving -----------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        parts = urlsplit(h.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and not (fault.status == 200 and fault.content_type.endswith("json")):
            status, body, ctype, headers = (
                fault.status,
                fault.body,
                fault.content_type,
                fault.headers,
            )
        elif parts.path != PATH:
            status, body, headers = 404, '{"error": "no such endpoint"}', {}
            ctype = "application/json"
        else:
            try:
                status, doc = 200, self._page(params)
            except ValueError as exc:
                status, doc = 400, {"error": str(exc)}
            body, ctype, headers = json.dumps(doc), "application/json", {}
        with self._lock:
            self._requests.append(Request(arrived, h.path, params, dict(h.headers), status))
        payload = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(payload)

    def _page(self, params: dict[str, str]) -> dict[str, Any]:
        size = int(params.get("page_size", DEFAULT_PAGE_SIZE))
        if not 0 < size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        rows = self.tickets()
        if "since" in params:
            rows = [t for t in rows if t["updated_at"] >= params["since"]]
        total = len(rows)
        if "page" in params:
            page = int(params["page"])
            if page < 1:
                raise ValueError("page is 1-based")
            items: list[Any] = rows[(page - 1) * size : page * size]
            more = page * size < total
        else:
            page = 0
            if params.get("cursor"):
                after = tuple(json.loads(base64.urlsafe_b64decode(params["cursor"])))
                rows = [t for t in rows if (t["updated_at"], t["id"]) > after]
            items, more = rows[:size], len(rows) > size
        next_cursor = None
        if more and items:
            last = items[-1]
            key = json.dumps([last["updated_at"], last["id"]]).encode()
            next_cursor = base64.urlsafe_b64encode(key).decode()
        with self._lock:
            corrupt = self._corrupt.popleft() if self._corrupt else None
        if corrupt is not None:
            items = [*items[: corrupt[0]], corrupt[1], *items[corrupt[0] :]]
        return {"items": items, "next_cursor": next_cursor, "page": page, "total": total}
