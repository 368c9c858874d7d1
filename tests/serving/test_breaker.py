"""The per-replica circuit breaker as pure logic: a fake clock, no server, no network."""

from __future__ import annotations

import pytest

from aios_dagster.lib.serving.breaker import ReplicaBoard

URLS = ["a:1", "b:1"]
THRESHOLD = 3
RESET_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def board(clock: FakeClock) -> ReplicaBoard:
    return ReplicaBoard(clock=clock)


def _fail(board: ReplicaBoard, url: str, times: int = 1) -> None:
    for _ in range(times):
        board.record_failure(url, "connection refused", THRESHOLD, RESET_S)


def _states(board: ReplicaBoard) -> dict[str, str]:
    return {h.url: h.state for h in board.snapshot(URLS, RESET_S)}


def test_requests_go_round_robin_and_are_counted(board: ReplicaBoard) -> None:
    picked = [board.acquire(URLS, set(), RESET_S) for _ in range(4)]
    assert picked == ["a:1", "b:1", "a:1", "b:1"]
    assert board.acquire(URLS, {"a:1"}, RESET_S) == "b:1"  # failover excludes what was tried
    assert board.acquire(URLS, set(URLS), RESET_S) is None
    assert [h.requests for h in board.snapshot(URLS, RESET_S)] == [2, 3]


def test_opens_only_after_threshold_consecutive_failures(board: ReplicaBoard) -> None:
    _fail(board, "a:1", THRESHOLD - 1)
    board.record_success("a:1")  # an answer in between resets the count
    _fail(board, "a:1", THRESHOLD - 1)
    assert _states(board)["a:1"] == "closed"
    _fail(board, "a:1")
    [a, b] = board.snapshot(URLS, RESET_S)
    assert a.state == "open" and a.consecutive_failures == THRESHOLD
    assert a.transient_failures == 2 * THRESHOLD - 1 and a.retry_in_s == RESET_S
    assert a.last_error == "connection refused"
    assert b.state == "closed"
    # An open replica is skipped; the other one takes every request.
    assert [board.acquire(URLS, set(), RESET_S) for _ in range(3)] == ["b:1"] * 3


def test_after_reset_exactly_one_trial_then_the_verdict(
    board: ReplicaBoard, clock: FakeClock
) -> None:
    _fail(board, "a:1", THRESHOLD)
    clock.now += RESET_S - 0.1
    assert board.acquire(["a:1"], set(), RESET_S) is None
    assert board.next_trial_in(["a:1"], RESET_S) == pytest.approx(0.1)
    clock.now += 0.1
    assert _states(board)["a:1"] == "half_open"
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"  # the trial
    assert board.acquire(["a:1"], set(), RESET_S) is None  # nobody else while it runs

    _fail(board, "a:1")  # the trial failed: open again for a full reset period
    assert _states(board)["a:1"] == "open"
    assert board.next_trial_in(["a:1"], RESET_S) == RESET_S

    clock.now += RESET_S
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"
    board.record_success("a:1")  # the trial answered: closed, count reset
    [a] = board.snapshot(["a:1"], RESET_S)
    assert (a.state, a.consecutive_failures, a.retry_in_s) == ("closed", 0, None)
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"


def test_a_trial_without_verdict_is_released(board: ReplicaBoard, clock: FakeClock) -> None:
    _fail(board, "a:1", THRESHOLD)
    clock.now += RESET_S
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"
    board.release("a:1")  # e.g. the caller's own bug: no verdict on the server
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"


def test_open_since_tells_a_known_outage_from_one_that_began_mid_call(
    board: ReplicaBoard, clock: FakeClock
) -> None:
    _fail(board, "a:1", THRESHOLD)
    opened = clock.now
    clock.now += 1.0
    _fail(board, "b:1", THRESHOLD)
    assert not board.open_since_before(URLS, opened + 0.5)  # b opened after that moment
    assert board.open_since_before(URLS, clock.now + 0.5)
    # A failed trial re-opens a but does not make its outage younger.
    clock.now += RESET_S
    assert board.acquire(["a:1"], set(), RESET_S) == "a:1"
    _fail(board, "a:1")
    assert board.open_since_before(["a:1"], opened + 0.5)
    board.record_success("a:1")
    assert not board.open_since_before(["a:1"], clock.now + 1.0)  # closed is never "open"


def test_next_trial_in_is_the_earliest_open_replica(board: ReplicaBoard, clock: FakeClock) -> None:
    assert board.next_trial_in(URLS, RESET_S) == 0.0  # nothing open
    _fail(board, "a:1", THRESHOLD)
    clock.now += 4.0
    _fail(board, "b:1", THRESHOLD)
    assert board.next_trial_in(URLS, RESET_S) == pytest.approx(RESET_S - 4.0)
