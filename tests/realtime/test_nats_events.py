"""The NATS JetStream event source against the NATS server running here (never skipped)."""

from __future__ import annotations

import asyncio
import os
import uuid

import nats

from aios_dagster.lib.realtime.nats_events import NatsEventsConfig, NatsEventSource

NATS_URL = os.environ.get("AIOS_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _publish(subject: str, values: list[bytes]) -> None:
    async def go() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for value in values:
            await js.publish(subject, value)
        await nc.close()

    asyncio.run(go())


def _config(stream: str) -> NatsEventsConfig:
    return NatsEventsConfig(
        servers=NATS_URL,
        stream=stream,
        subject=f"{stream}.mail",
        durable=f"{stream}-handler",
        create_stream=True,
        ack_wait_s=30,
    )


def _drain(source: NatsEventSource, want: int) -> list:
    events: list = []
    for _ in range(40):
        events += source.poll(want - len(events), 0.2)
        if len(events) >= want:
            break
    return events


def test_committed_messages_never_come_again_and_uncommitted_ones_do() -> None:
    stream = f"RT{uuid.uuid4().hex[:8].upper()}"
    first = NatsEventSource(_config(stream))  # creates the stream and the durable consumer
    _publish(f"{stream}.mail", [f"m{i}".encode() for i in range(5)])
    got = _drain(first, 5)
    assert [e.value for e in got] == [f"m{i}".encode() for i in range(5)]
    assert got[0].published_at is not None and got[0].name == f"{stream}-1.eml"
    first.commit(got[:3])
    first.rewind(got[3:4])  # NAK: delivered again at once
    again = _drain(first, 1)
    assert [e.value for e in again] == [b"m3"]
    first.close()  # m3 and m4 are held: closing NAKs them

    second = NatsEventSource(_config(stream))
    rest = _drain(second, 2)
    assert sorted(e.value for e in rest) == [b"m3", b"m4"]
    second.commit(rest)
    assert second.lag() == 0
    second.pause()
    _publish(f"{stream}.mail", [b"m5"])
    assert second.poll(5, 0.3) == []
    second.resume()
    assert [e.value for e in _drain(second, 1)] == [b"m5"]
    second.close()
