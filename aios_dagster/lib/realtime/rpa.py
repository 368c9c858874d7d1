"""The RPA bridge: routed tickets that need a back-office action become UiPath queue items.

UiPath Orchestrator's queue API (``POST /odata/Queues/UiPathODataSvc.AddQueueItem``) adds one
item to a named queue in a folder (``X-UIPATH-OrganizationUnitId``). Each item's ``Reference``
is the email's id, and the queues are created with *Enforce unique references*: a second add of
the same email is refused with error 1016 ("Duplicate Reference"), which this client reads as
"already there". So a retried request, a replayed pass or a restarted handler never adds a
second item. Transport errors, 429 and 5xx are retried through the one retry policy; any other
refusal is permanent and names the queue, the email and Orchestrator's message.

No UiPath tenant is reachable from the test machines: the tests run this client against a
local server that implements the endpoint's documented contract (``tests/realtime/uipath_api.py``).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from aios_dagster.lib.connectors.source import PermanentSourceError, TransientSourceError
from aios_dagster.lib.retry import RetryPolicy, call_with_retry

ADD_QUEUE_ITEM = "/odata/Queues/UiPathODataSvc.AddQueueItem"
DUPLICATE_REFERENCE = 1016  # Orchestrator's error code for a reference the queue already has


class UiPathQueueConfig(BaseModel):
    """Where routed tickets go: which decision goes to which queue, at which priority."""

    model_config = ConfigDict(extra="forbid")

    url: str  # https://cloud.uipath.com/<org>/<tenant>/orchestrator_ (no trailing slash)
    folder_id: int  # the Orchestrator folder (organization unit) holding the queues
    token: str = Field(repr=False)  # an external application's bearer token (templated from env)
    queues: dict[str, str]  # decision label -> queue name, e.g. card_fraud: CardBlocks
    priority_from: str = "priority"  # the head whose label picks the item's priority
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"P1": "High", "P2": "Normal", "P3": "Low"}
    )
    timeout_s: float = Field(default=10.0, gt=0)


class UiPathQueue:
    def __init__(self, config: UiPathQueueConfig, *, policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or RetryPolicy(attempts=4, first_wait_s=0.2, total_s=20.0)
        self._client = httpx.Client(
            base_url=config.url.rstrip("/"),
            timeout=config.timeout_s,
            headers={
                "Authorization": f"Bearer {config.token}",
                "X-UIPATH-OrganizationUnitId": str(config.folder_id),
            },
        )
        self.added = 0
        self.already_there = 0

    @property
    def source(self) -> str:
        return f"uipath {self.config.url}"

    def wants(self, decision: dict[str, Any]) -> str | None:
        """The queue a decision row goes to, or None (not a back-office action)."""
        return self.config.queues.get(str(decision.get("decision")))

    def add(self, queue: str, decision: dict[str, Any], content: dict[str, Any]) -> bool:
        """Add the item for ``decision`` (idempotent by its record id); True if it was new."""
        reference = str(decision["record_id"])
        priority = self.config.priorities.get(
            str(decision.get(self.config.priority_from)), "Normal"
        )
        body = {
            "itemData": {
                "Name": queue,
                "Priority": priority,
                "Reference": reference,
                "SpecificContent": content,
            }
        }
        where = f"queue {queue} reference {reference}"
        new = call_with_retry(
            lambda: self._post(body, where),
            policy=self.policy,
            source=self.source,
            what=f"AddQueueItem to {queue}",
        )
        if new:
            self.added += 1
        else:
            self.already_there += 1
        return new

    def _post(self, body: dict[str, Any], where: str) -> bool:
        try:
            response = self._client.post(ADD_QUEUE_ITEM, json=body)
        except httpx.TransportError as exc:
            raise TransientSourceError(self.source, where, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 201):
            return True
        detail = _error(response)
        if response.status_code == 409 and detail.get("errorCode") == DUPLICATE_REFERENCE:
            return False  # added before (a retry, a replay): the item is there
        message = f"HTTP {response.status_code}: {detail.get('message') or response.text[:200]}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSourceError(self.source, where, message)
        raise PermanentSourceError(self.source, where, message)

    def close(self) -> None:
        self._client.close()


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
