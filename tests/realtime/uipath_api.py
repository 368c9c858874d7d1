"""A local server implementing UiPath Orchestrator's AddQueueItem contract (no tenant is
reachable from here). What it checks is what the documented endpoint checks:

* ``POST /odata/Queues/UiPathODataSvc.AddQueueItem`` with ``Authorization: Bearer <token>``
  (401 otherwise) and ``X-UIPATH-OrganizationUnitId`` naming the folder (400 without it);
* a body ``{"itemData": {"Name", "Priority", "Reference", "SpecificContent"}}``; ``Name`` must
  be a queue of that folder (404, error 1002 otherwise); ``Priority`` High, Normal or Low;
* queues enforce unique references: a second item with a reference the queue has is refused
  with 409 and error code 1016 ("Error creating Transaction. Duplicate Reference.");
* 201 with the new item (``Id``, ``Key``, ``Status: New``...).

``fail_next`` answers that many requests with 503 first (a brief outage to ride through).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Orchestrator:
    def __init__(self, token: str, folder_id: int, queues: list[str]) -> None:
        self.token, self.folder_id = token, folder_id
        self.items: dict[str, list[dict[str, Any]]] = {q: [] for q in queues}
        self.requests = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, doc = outer.handle(self.path, dict(self.headers), raw)
                self._answer(status, doc)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/org/tenant/orchestrator_"

    def start(self) -> Orchestrator:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"message": "Service Unavailable", "errorCode": 0}
            if not path.endswith("/odata/Queues/UiPathODataSvc.AddQueueItem"):
                return 404, {"message": f"no route {path}", "errorCode": 0}
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "You are not authenticated!", "errorCode": 0}
            if headers.get("X-UIPATH-OrganizationUnitId") != str(self.folder_id):
                return 400, {"message": "A folder is required for this action.", "errorCode": 1101}
            try:
                item = json.loads(raw)["itemData"]
                name, priority, reference = item["Name"], item["Priority"], item["Reference"]
            except (ValueError, KeyError, TypeError):
                return 400, {"message": "itemData must be provided.", "errorCode": 1000}
            if priority not in ("High", "Normal", "Low"):
                return 400, {"message": f"Invalid priority {priority}", "errorCode": 1000}
            if name not in self.items:
                return 404, {"message": "Queue does not exist.", "errorCode": 1002}
            if any(i["Reference"] == reference for i in self.items[name]):
                return 409, {
                    "message": "Error creating Transaction. Duplicate Reference.",
                    "errorCode": 1016,
                }
            created = {
                "Id": sum(len(v) for v in self.items.values()) + 1,
                "Key": str(uuid.uuid4()),
                "Status": "New",
                "QueueDefinitionName": name,
                "Priority": priority,
                "Reference": reference,
                "SpecificContent": item.get("SpecificContent") or {},
            }
            self.items[name].append(created)
            return 201, created
