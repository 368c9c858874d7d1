"""The online store: small JSON documents by key, in Redis in production, in SQLite embedded.

The real-time handler reads what the batch path computed (customers and their recent
transactions) and keeps its own state (a customer's recent emails, a thread's ticket) here,
so a restarted handler picks up where it stopped. Values are JSON text; a namespace keeps
the two kinds of data apart. ``AIOS_ONLINE_STORE_URL`` picks the backend: ``redis://host:port/db``
or ``sqlite:///path`` (the embedded default, a file under the data folder).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import dagster as dg


class KeyValueStore(Protocol):
    """What the handler and the refresh asset need: many keys in one round trip."""

    def put_many(self, namespace: str, items: Mapping[str, Any]) -> None: ...

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]: ...

    def replace_all(self, namespace: str, items: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class SqliteStore:
    """The embedded store: one SQLite file (WAL), shared by the processes of one machine."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._conn.execute("pragma journal_mode=wal")
        self._conn.execute(
            "create table if not exists kv (ns text, key text, value text, primary key (ns, key))"
        )
        self._conn.commit()

    def put_many(self, namespace: str, items: Mapping[str, Any]) -> None:
        rows = [(namespace, k, json.dumps(v, sort_keys=True)) for k, v in items.items()]
        with self._lock, self._conn:
            self._conn.executemany("insert or replace into kv values (?, ?, ?)", rows)

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._conn.execute(
                    f"select key, value from kv where ns = ? and key in ({marks})",
                    [namespace, *chunk],
                ):
                    found[key] = json.loads(value)
        return found

    def replace_all(self, namespace: str, items: Mapping[str, Any]) -> None:
        """The namespace becomes exactly ``items``, in one transaction (readers see either)."""
        rows = [(namespace, k, json.dumps(v, sort_keys=True)) for k, v in items.items()]
        with self._lock, self._conn:
            self._conn.execute("delete from kv where ns = ?", [namespace])
            self._conn.executemany("insert into kv values (?, ?, ?)", rows)

    def close(self) -> None:
        self._conn.close()


class RedisStore:
    """Production: one Redis hash per namespace, so a namespace is replaced atomically."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self._redis = redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)

    def _hash(self, namespace: str) -> str:
        return f"aios:{namespace}"

    def put_many(self, namespace: str, items: Mapping[str, Any]) -> None:
        if items:
            mapping = {k: json.dumps(v, sort_keys=True) for k, v in items.items()}
            self._redis.hset(self._hash(namespace), mapping=mapping)

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        values = self._redis.hmget(self._hash(namespace), wanted)
        return {k: json.loads(v) for k, v in zip(wanted, values, strict=True) if v is not None}

    def replace_all(self, namespace: str, items: Mapping[str, Any]) -> None:
        """Written beside the live hash, then renamed over it: readers never see half."""
        staging = f"{self._hash(namespace)}:staging"
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(staging)
        if items:
            pipe.hset(staging, mapping={k: json.dumps(v, sort_keys=True) for k, v in items.items()})
            pipe.rename(staging, self._hash(namespace))
        else:
            pipe.delete(self._hash(namespace))
        pipe.execute()

    def close(self) -> None:
        self._redis.close()


def open_store(url: str) -> KeyValueStore:
    """The store ``url`` names: ``redis://``/``rediss://`` or ``sqlite:///<path>``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")).expanduser())
    raise ValueError(
        f"online store URL {url!r}: expected redis://host:port/db or sqlite:///path "
        "(AIOS_ONLINE_STORE_URL)"
    )


class OnlineStoreResource(dg.ConfigurableResource):
    """Where online features and handler state live (see the module docstring)."""

    url: str

    def open(self) -> KeyValueStore:
        return open_store(self.url)
