"""NATS JetStream as the handler's event source: a durable pull consumer, acked after durability.

The connector's own session (a private event loop bridging nats-py to this synchronous code)
and consumer set-up are reused, so the stream, subject and durable consumer are declared the
same way as for a ``kind: nats`` connector. The durable consumer is the position: a message is
acknowledged (``ack_sync``, confirmed by the server) only when the runtime commits it, after its
decision is durable; one that is not is delivered again (at once after a rewind, which NAKs it,
or after ``ack_wait_s`` when the process died).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Literal

import nats.errors
from nats.aio.msg import Msg

from aios_dagster.lib.connectors.nats.config import NatsSourceConfig
from aios_dagster.lib.connectors.nats.session import _ACK_TIMEOUT_S, _API_TIMEOUT_S, _Session
from aios_dagster.lib.connectors.nats_source import NatsReader
from aios_dagster.lib.realtime.events import Event


class NatsEventsConfig(NatsSourceConfig):
    kind: Literal["nats"] = "nats"
    fetch_timeout_s: float = 0.1  # a pass waits this long for more messages


class NatsEventSource:
    def __init__(self, config: NatsEventsConfig) -> None:
        self.config = config
        reader = NatsReader(config.model_copy(update={"batch_size": 1}))
        self._describe = reader.describe()
        self._session = _Session(config, self._describe)
        self._js = self._session.connect().jetstream(timeout=_API_TIMEOUT_S)
        self._sub = self._session.run(reader.bind(self._js))
        self._held: dict[str, Msg] = {}
        self._paused = False

    def describe(self) -> str:
        return self._describe

    def poll(self, max_events: int, timeout_s: float) -> list[Event]:
        if self._paused:
            time.sleep(timeout_s)
            return []

        async def fetch() -> list[Msg]:
            try:
                return await self._sub.fetch(batch=max_events, timeout=max(timeout_s, 0.05))
            except nats.errors.TimeoutError:
                return []

        events = []
        for msg in self._session.run(fetch()):
            seq = msg.metadata.sequence.stream
            position = f"seq {seq}"
            self._held[position] = msg
            events.append(
                Event(
                    source=f"nats {self.config.stream}",
                    position=position,
                    value=msg.data,
                    name=f"{self.config.stream}-{seq}.eml",
                    published_at=msg.metadata.timestamp,
                )
            )
        return events

    def _settle(self, events: Sequence[Event], how: str) -> None:
        msgs = [self._held.pop(e.position) for e in events if e.position in self._held]
        if not msgs:
            return

        async def settle() -> None:
            calls = [m.ack_sync(timeout=_ACK_TIMEOUT_S) if how == "ack" else m.nak() for m in msgs]
            await asyncio.gather(*calls)

        self._session.run(settle(), record=f"{len(msgs)} messages")

    def commit(self, events: Sequence[Event]) -> None:
        self._settle(events, "ack")

    def rewind(self, events: Sequence[Event]) -> None:
        self._settle(events, "nak")

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def lag(self) -> int | None:
        async def info() -> int:
            consumer = await self._js.consumer_info(self.config.stream, self.config.durable)
            return int(consumer.num_pending or 0) + int(consumer.num_ack_pending or 0)

        try:
            return self._session.run(info())
        except Exception:  # a figure for reports: never worth failing a pass over
            return None

    def close(self) -> None:
        """NAK what is still held (it comes again at once), then close the connection."""
        if self._session.closed:
            return
        held = list(self._held.values())
        self._held.clear()
        self._session.in_flight[0] = held  # the session NAKs its in-flight messages on close
        try:
            self._session.run(self._sub.unsubscribe())
        finally:
            self._session.close()
