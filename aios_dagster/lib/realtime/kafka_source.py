"""Kafka as the handler's event source (``confluent-kafka``), offsets committed after durability.

The runtime assigns itself the topic's partitions (all of them, or those configured) and reads
from the group's committed offsets, so a restarted handler resumes exactly after the last
durable decision. Assignment is explicit rather than through a group subscription: a handler
that owns its partitions starts reading at once instead of waiting for a group rebalance, and
scaling out means giving each replica its own ``partitions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import BaseModel, Field

from aios_dagster.lib.connectors.source import TransientSourceError
from aios_dagster.lib.realtime.events import Event


class KafkaSourceConfig(BaseModel):
    """Where the new-mail events are: one topic whose messages are raw ``.eml`` bytes."""

    kind: str = "kafka"
    bootstrap_servers: str
    topic: str
    group_id: str = "aios-realtime"
    partitions: list[int] | None = None  # None: every partition of the topic
    fetch_wait_ms: int = Field(default=20, ge=0)  # how long the broker may hold a fetch
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)


class KafkaEventSource:
    def __init__(self, config: KafkaSourceConfig) -> None:
        self.config = config
        self._consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": config.fetch_wait_ms,
                "enable.partition.eof": False,
                **config.client,
            }
        )
        self._fetched: dict[int, int] = {}  # partition -> offset after the last one fetched
        self._assignment = self._assign()

    def describe(self) -> str:
        return f"kafka {self.config.topic}@{self.config.bootstrap_servers}"

    def _error(self, reason: str) -> TransientSourceError:
        return TransientSourceError(self.describe(), None, reason)

    def _assign(self) -> list[TopicPartition]:
        try:
            metadata = self._consumer.list_topics(self.config.topic, timeout=10)
        except KafkaException as exc:
            raise self._error(f"cannot read the topic's metadata: {exc}") from exc
        topic = metadata.topics.get(self.config.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise self._error(f"topic not available: {getattr(topic, 'error', 'missing')}")
        numbers = self.config.partitions or sorted(topic.partitions)
        committed = self._consumer.committed(
            [TopicPartition(self.config.topic, p) for p in numbers], timeout=10
        )
        start = [
            TopicPartition(tp.topic, tp.partition, tp.offset)
            if tp.offset >= 0
            else TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
            for tp in committed
        ]
        self._consumer.assign(start)
        return start

    def poll(self, max_events: int, timeout_s: float) -> list[Event]:
        events: list[Event] = []
        for message in self._consumer.consume(num_messages=max_events, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.fatal() or not error.retriable():
                    raise self._error(f"consumer error: {error}")
                continue  # librdkafka retries these itself
            self._fetched[message.partition()] = max(
                self._fetched.get(message.partition(), 0), message.offset() + 1
            )
            kind, stamp = message.timestamp()
            published = datetime.fromtimestamp(stamp / 1000, UTC) if stamp and kind else None
            events.append(
                Event(
                    source=f"kafka {message.topic()}[{message.partition()}]",
                    position=f"offset {message.offset()}",
                    value=message.value() or b"",
                    name=f"{message.topic()}-{message.partition()}-{message.offset()}.eml",
                    published_at=published,
                    coords=(message.partition(), message.offset()),
                )
            )
        return events

    def commit(self, events: Sequence[Event]) -> None:
        after: dict[int, int] = {}
        for event in events:
            partition, offset = event.coords
            after[partition] = max(after.get(partition, -1), offset + 1)
        if not after:
            return
        offsets = [TopicPartition(self.config.topic, p, o) for p, o in sorted(after.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise self._error(f"offset commit failed: {exc}") from exc

    def rewind(self, events: Sequence[Event]) -> None:
        first: dict[int, int] = {}
        for event in events:
            partition, offset = event.coords
            first[partition] = min(first.get(partition, offset), offset)
        for partition, offset in first.items():
            self._consumer.seek(TopicPartition(self.config.topic, partition, offset))

    def pause(self) -> None:
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def lag(self) -> int | None:
        """Messages after the committed offsets: what is not durably decided yet.

        The end of a partition is the broker's high watermark or, if it is behind what this
        consumer has already fetched (a broker may report it per record batch), the latter.
        """
        total = 0
        try:
            committed = self._consumer.committed(self._consumer.assignment(), timeout=5)
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                end = max(high, self._fetched.get(tp.partition, 0))
                total += max(end - (tp.offset if tp.offset >= 0 else low), 0)
        except KafkaException:
            return None
        return total

    def close(self) -> None:
        self._consumer.close()
