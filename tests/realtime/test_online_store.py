"""The online store on both backends: the embedded SQLite file and the Redis running here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_dagster.lib.realtime.online_store import KeyValueStore, open_store


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'online.sqlite'}")
    else:
        opened = open_store("redis://127.0.0.1:6379/0")  # fails loudly if Redis is not up
    yield opened
    opened.close()


def test_documents_round_trip_and_a_namespace_is_replaced_whole(store: KeyValueStore) -> None:
    ns = f"test-{uuid.uuid4().hex[:8]}"
    store.put_many(ns, {"a": {"n": 1}, "b": [1, 2]})
    assert store.get_many(ns, ["a", "b", "missing", "a"]) == {"a": {"n": 1}, "b": [1, 2]}

    store.replace_all(ns, {"c": "only"})
    assert store.get_many(ns, ["a", "b", "c"]) == {"c": "only"}
    store.replace_all(ns, {})
    assert store.get_many(ns, ["c"]) == {}


def test_a_second_process_sees_what_the_first_wrote(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    writer, reader = open_store(url), open_store(url)
    writer.put_many("ns", {f"k{i}": i for i in range(1200)})  # more keys than one IN list
    assert len(reader.get_many("ns", [f"k{i}" for i in range(1200)])) == 1200
    writer.close()
    reader.close()


def test_an_unknown_url_names_the_setting() -> None:
    with pytest.raises(ValueError, match="AIOS_ONLINE_STORE_URL"):
        open_store("memcached://x")
