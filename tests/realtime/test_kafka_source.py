"""The Kafka event source against a real broker: what is committed is never delivered again."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_dagster.lib.realtime.kafka_source import KafkaEventSource, KafkaSourceConfig
from tests.kafka_broker import Broker


def _source(broker: Broker, topic: str, group: str = "g") -> KafkaEventSource:
    return KafkaEventSource(
        KafkaSourceConfig(bootstrap_servers=broker.bootstrap, topic=topic, group_id=group)
    )


def _drain(source: KafkaEventSource, want: int) -> list:
    events: list = []
    for _ in range(50):
        events += source.poll(want - len(events), 0.2)
        if len(events) >= want:
            break
    return events


def test_a_restarted_source_resumes_after_the_last_commit(broker: Broker) -> None:
    broker.create_topic("resume", partitions=2)
    broker.produce("resume", [f"m{i}".encode() for i in range(6)], partition=0)
    broker.produce("resume", [f"n{i}".encode() for i in range(4)], partition=1)

    first = _source(broker, "resume")
    got = _drain(first, 10)
    assert sorted(e.value for e in got) == sorted(
        [f"m{i}".encode() for i in range(6)] + [f"n{i}".encode() for i in range(4)]
    )
    done = [e for e in got if e.value in (b"m0", b"m1", b"m2", b"n0")]
    first.commit(done)
    assert first.lag() == 6  # behind the committed position, not the fetched one
    first.close()

    again = _source(broker, "resume")
    rest = _drain(again, 6)
    assert sorted(e.value for e in rest) == [b"m3", b"m4", b"m5", b"n1", b"n2", b"n3"]
    assert all(e.published_at is not None for e in rest)
    assert {e.name for e in rest} >= {"resume-0-3.eml", "resume-1-1.eml"}
    again.close()


def test_rewound_events_come_again_and_paused_fetches_nothing(broker: Broker) -> None:
    broker.create_topic("rewind")
    broker.produce("rewind", [b"a", b"b", b"c"])
    source = _source(broker, "rewind", group="r")
    got = _drain(source, 3)
    source.rewind(got[1:])
    assert [e.value for e in _drain(source, 2)] == [b"b", b"c"]

    source.pause()
    broker.produce("rewind", [b"d"])
    assert source.poll(10, 0.5) == []
    source.resume()
    assert [e.value for e in _drain(source, 1)] == [b"d"]
    source.close()


def test_a_missing_topic_is_a_clear_transient_error(broker: Broker, tmp_path: Path) -> None:
    from aios_dagster.lib.connectors.source import TransientSourceError

    with pytest.raises(TransientSourceError, match="no-such-topic"):
        _source(broker, "no-such-topic")
