"""The ``nats`` connector kind against a real NATS server with JetStream (nothing is mocked).

The server is expected on ``AIOS_TEST_NATS_URL`` (default nats://127.0.0.1:4222). If it is not
there every test FAILS saying so: a skipped bus test would hide a broken ingestion path. Each test
uses its own stream, subject and durable consumer (uuid) and deletes the stream afterwards.

What is asserted is what a user of the lake would notice: every message lands once, nothing is
skipped after a crash, a bad message is quarantined without holding back its neighbours, and an
unreachable or misconfigured bus fails the run with a message naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.js.errors
import pyarrow as pa
import pytest
from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext

from aios_dagster.lib.connectors.nats_source import NatsReader, NatsSourceConfig
from aios_dagster.lib.connectors.source import (
    PermanentSourceError,
    SourceBatch,
    TransientSourceError,
)

NATS_URL = os.environ.get("AIOS_TEST_NATS_URL", "nats://127.0.0.1:4222")
START_HINT = (
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)

T = TypeVar("T")


def _range(batch_id: str) -> str:
    """``stream-first-last`` of a batch id (the trailing digest names the exact sequences)."""
    return batch_id.rsplit("-", 1)[0]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _js_call(fn: Any) -> Any:
    nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def nats_server() -> str:
    """The test server's URL, after checking it answers and has JetStream; fails loudly if not."""

    async def probe(js: JetStreamContext) -> None:
        await js.account_info()

    try:
        _run(_js_call(probe))
    except Exception as exc:
        pytest.fail(
            f"no NATS server with JetStream at {NATS_URL} ({exc!r}); these tests need a real "
            f"one. Start it with: {START_HINT}",
            pytrace=False,
        )
    return NATS_URL


@dataclass
class Bus:
    """One test's stream/subject/durable, plus the producer-side helpers a test needs."""

    stream: str
    subject: str
    durable: str

    def config(self, **overrides: Any) -> NatsSourceConfig:
        fields: dict[str, Any] = {
            "servers": NATS_URL,
            "stream": self.stream,
            "subject": self.subject,
            "durable": self.durable,
            "fetch_timeout_s": 3.0,
        }
        return NatsSourceConfig(**(fields | overrides))

    def reader(self, **overrides: Any) -> NatsReader:
        return NatsReader(self.config(**overrides))

    def publish(self, payloads: list[bytes | dict[str, Any] | list[Any]]) -> None:
        async def go(js: JetStreamContext) -> None:
            for payload in payloads:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                await js.publish(self.subject, data, stream=self.stream)

        _run(_js_call(go))

    def consumer_info(self) -> ConsumerInfo:
        async def go(js: JetStreamContext) -> ConsumerInfo:
            return await js.consumer_info(self.stream, self.durable)

        return _run(_js_call(go))

    def delete_stream(self) -> None:
        async def go(js: JetStreamContext) -> None:
            with suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(self.stream)

        _run(_js_call(go))


def _new_bus() -> Bus:
    tag = uuid.uuid4().hex[:12]
    return Bus(stream=f"TEST_{tag}", subject=f"test.{tag}.events", durable=f"landing_{tag}")


@pytest.fixture
def bus(nats_server: str) -> Iterator[Bus]:
    """A fresh, empty stream (created the way a producer would), deleted after the test."""
    del nats_server
    b = _new_bus()

    async def create(js: JetStreamContext) -> None:
        await js.add_stream(name=b.stream, subjects=[b.subject])

    _run(_js_call(create))
    try:
        yield b
    finally:
        b.delete_stream()


def _land_all(reader: NatsReader) -> list[SourceBatch]:
    """What the landing runtime does: take each batch, 'write' it, then acknowledge it."""
    landed = []
    with closing(reader.batches({})) as batches:
        for batch in batches:
            landed.append(batch)
            assert batch.ack is not None
            batch.ack()
    return landed


def _seqs(batches: list[SourceBatch]) -> list[int]:
    return [seq for b in batches for seq in b.table.column("_stream_seq").to_pylist()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- landing -----------------------------------------------------------------------------------


def test_every_message_lands_once_in_batches_and_is_acknowledged(bus: Bus) -> None:
    bus.publish([{"n": i, "text": f"message {i}"} for i in range(1050)])
    # A long fetch timeout makes "the run ended without waiting for it" measurable below.
    reader = bus.reader(fetch_timeout_s=20.0)

    started = time.monotonic()
    landed = _land_all(reader)
    elapsed = time.monotonic() - started

    assert [b.table.num_rows for b in landed] == [500, 500, 50]
    assert _seqs(landed) == list(range(1, 1051))
    assert [n for b in landed for n in b.table.column("n").to_pylist()] == list(range(1050))
    assert {s for b in landed for s in b.table.column("_subject").to_pylist()} == {bus.subject}
    assert landed[0].table.schema.field("_stream_seq").type == pa.int64()
    assert landed[0].table.schema.field("_subject").type == pa.string()
    assert [_range(b.batch_id) for b in landed] == [
        f"{bus.stream}-1-500",
        f"{bus.stream}-501-1000",
        f"{bus.stream}-1001-1050",
    ]
    assert [b.cursor for b in landed] == [
        {"stream_seq": 500},
        {"stream_seq": 1000},
        {"stream_seq": 1050},
    ]
    source = f"nats://127.0.0.1:4222/{bus.stream}/{bus.subject}"
    assert reader.describe() == source
    assert {b.source for b in landed} == {source}
    assert landed[2].row_refs is not None
    assert landed[2].row_refs[0] == f"{bus.stream} seq 1001"
    assert all(not b.rejects for b in landed)
    # The run ended because nothing was pending, not by waiting out a fetch timeout.
    assert elapsed < 10.0

    info = bus.consumer_info()
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    # A second run finds nothing, quickly.
    started = time.monotonic()
    assert _land_all(bus.reader(fetch_timeout_s=20.0)) == []
    assert time.monotonic() - started < 10.0


def test_max_batches_caps_a_run_and_the_next_run_continues(bus: Bus) -> None:
    bus.publish([{"n": i} for i in range(30)])

    first = _land_all(bus.reader(batch_size=10, max_batches=2))
    second = _land_all(bus.reader(batch_size=10, max_batches=2))

    assert _seqs(first) == list(range(1, 21))
    assert _seqs(second) == list(range(21, 31))


def test_a_field_first_seen_in_a_later_message_is_not_dropped(bus: Bus) -> None:
    bus.publish([{"a": 1}, {"a": 2, "b": "late"}, {"b": "only b"}])

    (batch,) = _land_all(bus.reader())

    assert batch.table.column_names == ["a", "b", "_stream_seq", "_subject"]
    assert batch.table.column("a").to_pylist() == [1, 2, None]
    assert batch.table.column("b").to_pylist() == [None, "late", "only b"]


# -- acknowledgement and redelivery --------------------------------------------------------------


@pytest.mark.parametrize("how", ["generator closed", "landing raised"])
def test_an_unacknowledged_batch_is_delivered_again(bus: Bus, how: str) -> None:
    bus.publish([{"n": i} for i in range(10)])
    reader = bus.reader(batch_size=5, ack_wait_s=1.0)

    if how == "generator closed":
        batches = reader.batches({})
        unlanded = next(batches)
        batches.close()
    else:
        with pytest.raises(ZeroDivisionError), closing(reader.batches({})) as batches:
            for unlanded in batches:  # noqa: B007 - kept to ack it after the failure
                raise ZeroDivisionError("writing the parquet part failed")
    # The generator closed its connection: acknowledging now is refused, not silently lost.
    assert unlanded.ack is not None
    with pytest.raises(RuntimeError, match="after the reader was closed"):
        unlanded.ack()

    landed = _land_all(bus.reader(batch_size=5, ack_wait_s=1.0))

    assert sorted(_seqs(landed)) == list(range(1, 11))
    # Same messages, same batch id: the runtime rewrites that lake part instead of adding one.
    assert unlanded.batch_id in [b.batch_id for b in landed]
    info = bus.consumer_info()
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


def test_a_batch_held_by_a_crashed_process_is_redelivered_after_ack_wait(bus: Bus) -> None:
    bus.publish([{"n": i} for i in range(10)])
    config = bus.config(batch_size=5, ack_wait_s=1.0).model_dump_json()
    crash = (
        "import os, sys\n"
        "from aios_dagster.lib.connectors.nats_source import NatsReader, NatsSourceConfig\n"
        "reader = NatsReader(NatsSourceConfig.model_validate_json(sys.argv[1]))\n"
        "batch = next(reader.batches({}))\n"
        "sys.stdout.write(batch.batch_id)\n"
        "sys.stdout.flush()\n"
        "os._exit(3)  # dies with the batch unacknowledged: no finally, no NAK\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", crash, config], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert _range(proc.stdout) == f"{bus.stream}-1-5"

    landed = _land_all(bus.reader(batch_size=5, ack_wait_s=1.0))

    assert sorted(_seqs(landed)) == list(range(1, 11))
    assert f"{bus.stream}-1-5" in [_range(b.batch_id) for b in landed]


def test_only_the_batch_not_yet_acknowledged_is_delivered_again(bus: Bus) -> None:
    bus.publish([{"n": i} for i in range(12)])
    reader = bus.reader(batch_size=5, ack_wait_s=1.0)

    with closing(reader.batches({})) as batches:
        first = next(batches)
        assert first.ack is not None
        first.ack()  # batch 1 is in the lake
        second = next(batches)  # batch 2 is read, then the run dies before landing it
    assert _range(first.batch_id) == f"{bus.stream}-1-5"
    assert _range(second.batch_id) == f"{bus.stream}-6-10"

    landed = _land_all(bus.reader(batch_size=5, ack_wait_s=1.0))

    assert [_range(b.batch_id) for b in landed] == [f"{bus.stream}-6-10", f"{bus.stream}-11-12"]
    assert _seqs(landed) == list(range(6, 13))


# -- bad messages ------------------------------------------------------------------------------


def test_bad_messages_are_rejected_and_the_good_ones_of_the_batch_kept(bus: Bus) -> None:
    long_garbage = b"<" * 2000
    bus.publish(
        [
            {"n": 1},  # seq 1
            b"this is not json",  # seq 2
            [1, 2],  # seq 3
            b'\xff\xfe{"n": 3}',  # seq 4
            {"n": 2, "note": "kept"},  # seq 5
            long_garbage,  # seq 6
            b'"a bare string"',  # seq 7
            {"_subject": "spoofed"},  # seq 8
        ]
    )

    (batch,) = _land_all(bus.reader())

    assert batch.table.column("n").to_pylist() == [1, 2]
    assert batch.table.column("_stream_seq").to_pylist() == [1, 5]
    assert batch.table.column("_subject").to_pylist() == [bus.subject, bus.subject]
    rejected = {r.record: r.rule for r in batch.rejects}
    assert rejected == {
        f"{bus.stream} seq 2": "not_json",
        f"{bus.stream} seq 3": "not_an_object",
        f"{bus.stream} seq 4": "undecodable",
        f"{bus.stream} seq 6": "not_json",
        f"{bus.stream} seq 7": "not_an_object",
        f"{bus.stream} seq 8": "reserved_field",
    }
    values = {r.record: r.value for r in batch.rejects}
    assert values[f"{bus.stream} seq 2"] == "this is not json"
    assert values[f"{bus.stream} seq 3"] == "[1, 2]"
    assert values[f"{bus.stream} seq 4"] is not None
    assert values[f"{bus.stream} seq 4"].endswith('{"n": 3}')
    long_value = values[f"{bus.stream} seq 6"]
    assert long_value is not None
    assert 500 <= len(long_value) <= 510
    assert (
        _range(batch.batch_id) == f"{bus.stream}-1-8"
    )  # rejected messages belong to the batch too
    info = bus.consumer_info()
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # rejects are acked with it


def test_a_value_whose_type_conflicts_with_the_batch_is_rejected_not_the_batch(bus: Bus) -> None:
    bus.publish([{"v": 1}, {"v": "one"}, {"v": 2.5}, {"v": None}])

    (batch,) = _land_all(bus.reader())

    assert batch.table.column("v").to_pylist() == [1.0, 2.5, None]
    assert batch.table.column("_stream_seq").to_pylist() == [1, 3, 4]
    assert [(r.record, r.rule) for r in batch.rejects] == [(f"{bus.stream} seq 2", "type_conflict")]


# -- errors ------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_transient_error_naming_it(nats_server: str) -> None:
    del nats_server
    port = _closed_port()
    reader = NatsReader(
        {
            "servers": f"nats://robot:s3cret@127.0.0.1:{port}",
            "stream": "ANY",
            "subject": "any.subject",
            "durable": "any",
        }
    )

    started = time.monotonic()
    with pytest.raises(TransientSourceError) as err:
        next(reader.batches({}))
    assert time.monotonic() - started < 10
    assert f"nats://127.0.0.1:{port}" in str(err.value)
    assert "s3cret" not in str(err.value)
    assert reader.describe() == f"nats://127.0.0.1:{port}/ANY/any.subject"

    with pytest.raises(TransientSourceError, match=f"nats://127.0.0.1:{port}"):
        reader.has_new({})


def test_a_missing_stream_is_a_permanent_error_naming_it(nats_server: str) -> None:
    del nats_server
    bus = _new_bus()  # never created

    with pytest.raises(PermanentSourceError, match=bus.stream):
        next(bus.reader().batches({}))
    with pytest.raises(PermanentSourceError, match=bus.stream):
        bus.reader().has_new({})


def test_create_stream_creates_a_missing_stream_for_demos(nats_server: str) -> None:
    del nats_server
    bus = _new_bus()
    try:
        assert _land_all(bus.reader(create_stream=True)) == []
        bus.publish([{"n": 1}])
        assert _seqs(_land_all(bus.reader(create_stream=True))) == [1]
    finally:
        bus.delete_stream()


def test_a_durable_bound_to_another_subject_is_refused(bus: Bus) -> None:
    _land_all(bus.reader())  # creates the durable on bus.subject

    with pytest.raises(PermanentSourceError, match=bus.durable):
        next(bus.reader(subject=f"{bus.subject}.other").batches({}))


# -- has_new ------------------------------------------------------------------------------------


def test_has_new_follows_what_a_run_would_land(bus: Bus) -> None:
    reader = bus.reader(batch_size=5, ack_wait_s=30.0)
    assert reader.has_new({}) is False  # empty stream, no consumer yet

    bus.publish([{"n": 1}])
    assert reader.has_new({}) is True  # before the first run
    assert reader.has_new({"stream_seq": 1}) is False  # ...unless the cursor is already there

    _land_all(reader)
    assert reader.has_new({"stream_seq": 1}) is False  # everything acknowledged

    bus.publish([{"n": 2}])
    assert reader.has_new({"stream_seq": 1}) is True

    with closing(reader.batches({})) as batches:
        next(batches)  # read, never acknowledged
        assert reader.has_new({"stream_seq": 1}) is True


def test_config_rejects_unknown_fields_and_bad_names() -> None:
    base = {"servers": NATS_URL, "stream": "S", "subject": "a.b", "durable": "d"}
    with pytest.raises(ValueError, match="extra"):
        NatsSourceConfig(**base, batchsize=10)
    with pytest.raises(ValueError, match="stream"):
        NatsSourceConfig(**(base | {"stream": "has.dot"}))
    with pytest.raises(ValueError, match="servers"):
        NatsSourceConfig(**(base | {"servers": " , "}))
    config = NatsSourceConfig(**(base | {"servers": "a:4222, nats://u:p@b:4223"}))
    assert config.server_urls == ["nats://a:4222", "nats://u:p@b:4223"]
    assert NatsReader(config).describe() == "nats://a:4222,b:4223/S/a.b"
