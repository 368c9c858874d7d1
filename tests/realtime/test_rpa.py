"""The UiPath queue client against a local server implementing AddQueueItem's contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aios_dagster.lib.connectors.source import PermanentSourceError
from aios_dagster.lib.realtime.rpa import UiPathQueue, UiPathQueueConfig
from tests.realtime.uipath_api import Orchestrator


@pytest.fixture
def orchestrator() -> Iterator[Orchestrator]:
    server = Orchestrator("t0ken", 7, ["CardBlocks", "AccountChanges"]).start()
    yield server
    server.stop()


def _client(server: Orchestrator, token: str = "t0ken") -> UiPathQueue:
    return UiPathQueue(
        UiPathQueueConfig(
            url=server.url,
            folder_id=7,
            token=token,
            queues={"card_fraud": "CardBlocks", "account_servicing": "AccountChanges"},
        )
    )


def test_an_item_is_added_once_however_often_it_is_sent(orchestrator: Orchestrator) -> None:
    client = _client(orchestrator)
    decision = {"record_id": "EM-1", "decision": "card_fraud", "priority": "P1"}
    queue = client.wants(decision)
    assert queue == "CardBlocks" and client.wants({"decision": "complaints"}) is None

    assert client.add(queue, decision, {"email_id": "EM-1"}) is True
    orchestrator.fail_next = 2  # a brief outage: ridden through by the retry policy
    assert client.add(queue, decision, {"email_id": "EM-1"}) is False  # the duplicate is refused
    [item] = orchestrator.items["CardBlocks"]
    assert item["Reference"] == "EM-1" and item["Priority"] == "High"
    assert item["SpecificContent"] == {"email_id": "EM-1"}
    assert (client.added, client.already_there) == (1, 1)
    client.close()


def test_a_refusal_that_cannot_pass_on_retry_names_queue_and_email(
    orchestrator: Orchestrator,
) -> None:
    client = _client(orchestrator, token="wrong")
    decision = {"record_id": "EM-2", "decision": "account_servicing", "priority": "P3"}
    with pytest.raises(PermanentSourceError, match=r"queue AccountChanges reference EM-2.*401"):
        client.add("AccountChanges", decision, {})
    assert orchestrator.requests == 1  # not retried
    client.close()
