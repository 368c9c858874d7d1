"""Fixtures for connector tests: real local services the readers talk to."""

from collections.abc import Iterator

import pytest

from tests.connectors.http_api import TicketApi


@pytest.fixture
def http_api() -> Iterator[TicketApi]:
    """A local ticket API with 1,000 tickets, fresh (no faults, empty log) for every test."""
    api = TicketApi().start()
    try:
        yield api
    finally:
        api.stop()
