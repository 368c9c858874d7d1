"""Where a handler's decisions go besides the lake: the routing and review topics, the RPA queue.

Declared in the handler's ``sinks:`` block and run by the ``sink`` step, before ``persist``:
a pass commits its events only after both, so a crash re-delivers them and the sinks see them
again. The RPA queue is idempotent by the email's id (``rpa``); the topics are keyed by it, so
a consumer that keeps the latest message per key sees each email once (Kafka's at-least-once).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from aios_dagster.lib.realtime.rpa import UiPathQueue, UiPathQueueConfig


class TopicsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str
    routed: str  # decisions a queue acts on
    review: str  # decisions below the confidence floor: a person decides


class SinksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: TopicsConfig | None = None
    rpa: UiPathQueueConfig | None = None


_FIELDS = ("record_id", "decision", "needs_review", "model_name", "model_version", "route",
           "policy", "input_hash", "run_id")  # fmt: skip


class Sinks:
    def __init__(self, config: SinksConfig, heads: list[str]) -> None:
        self.config = config
        self.heads = heads
        self.rpa = UiPathQueue(config.rpa) if config.rpa else None
        self._producer = None
        if config.topics:
            from confluent_kafka import Producer

            self._producer = Producer(
                {
                    "bootstrap.servers": config.topics.bootstrap_servers,
                    "enable.idempotence": True,  # no duplicates from the producer's own retries
                    "linger.ms": 5,
                }
            )
        self.published = 0

    def deliver(self, decisions: list[dict[str, Any]], tickets: dict[str, str]) -> None:
        """Every decision to its topic and, if its queue is a back-office one, to the RPA queue."""
        for row in decisions:
            message = {k: row.get(k) for k in _FIELDS}
            for head in self.heads:
                message[head] = row.get(head)
                message[f"{head}_confidence"] = row.get(f"{head}_confidence")
            message["ticket_id"] = tickets.get(str(row["record_id"]), row["record_id"])
            if self._producer is not None and self.config.topics is not None:
                topic = (
                    self.config.topics.review if row["needs_review"] else self.config.topics.routed
                )
                self._producer.produce(
                    topic, key=str(row["record_id"]), value=json.dumps(message, default=str)
                )
            if self.rpa is not None and not row["needs_review"]:
                queue = self.rpa.wants(row)
                if queue is not None:
                    self.rpa.add(queue, row, message)
        if self._producer is not None:
            left = self._producer.flush(30)
            if left:
                raise RuntimeError(f"{left} decisions not acknowledged by the topics within 30 s")
            self.published += len(decisions)

    def close(self) -> None:
        if self.rpa is not None:
            self.rpa.close()
        if self._producer is not None:
            self._producer.flush(10)
