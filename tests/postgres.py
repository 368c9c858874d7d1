"""Scratch objects in the machine's real PostgreSQL for one test, always dropped afterwards.

PostgreSQL runs on 127.0.0.1:5432 with trust auth here and in CI. If it is not reachable the
test fails loudly (never skips): a skipped Postgres test hides a broken production path.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def scratch(kind: str, prefix: str, *, database: str = "test") -> Iterator[str]:
    """Create a uniquely named ``schema`` (in ``database``) or ``database``; drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    dsn = f"{SERVER}/{database if kind == 'schema' else 'postgres'}"
    drop = (
        f"drop schema {name} cascade" if kind == "schema" else f"drop database {name} with (force)"
    )
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"create {kind} {name}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {dsn} unavailable: {exc}", pytrace=False)
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(drop)
