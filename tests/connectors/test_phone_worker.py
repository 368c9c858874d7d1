"""The phone worker masks exactly as this process does, and losing it never loses a mask.

A real child process is started in each test (``python -m ...phone_worker``); nothing is faked.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time

import pyarrow as pa
import pytest

from aios_dagster.lib.connectors.phone_text import forget_seen_numbers
from aios_dagster.lib.connectors.phone_worker import PhoneWorker
from aios_dagster.lib.connectors.phones import mask_candidate_rows
from tests.unit.test_pii import FOREIGN_PHONES

READY_WITHIN_S = 60


def _corpus(rows: int) -> pa.Array:
    rng = random.Random(7)
    texts: list[str | None] = [f"please call {number} today" for number in FOREIGN_PHONES]
    texts += [None, "", "order 1234567890123 shipped", "09:15 (10/11/2026)", "ref 0123456"]
    texts += ["appelez le +33 1 42 68 53 00 — merci ✓", "zero\x00byte 020 7946 0958"]
    while len(texts) < rows:
        texts.append(f"call back on 07{rng.randrange(10**9):09d} after 5pm")
    return pa.array(texts, pa.string())


def _served(worker: PhoneWorker, texts: pa.Array) -> tuple[pa.Array, int]:
    """Call until the child answers (calls before it is ready are masked here)."""
    deadline = time.monotonic() + READY_WITHIN_S
    while True:
        before = worker.served
        answer = worker(texts)
        if worker.served > before:
            return answer
        assert worker.failure is None, worker.failure
        assert time.monotonic() < deadline, "the phone worker never said it was ready"
        time.sleep(0.05)


def test_the_worker_masks_what_this_process_masks() -> None:
    texts = _corpus(3_000)
    forget_seen_numbers()
    expected, expected_count = mask_candidate_rows(texts)
    with PhoneWorker(start_rows=1_000) as worker:
        masked, count = _served(worker, texts)
        assert worker.pid is not None and worker.pid != os.getpid()
        assert masked.equals(expected) and count == expected_count
        assert count >= len(FOREIGN_PHONES) + 2_900
        assert masked[0].as_py() == "please call [PHONE] today"
        assert masked.null_count == 1
        pid = worker.pid
    assert worker.pid is None  # closed: the child read the end of its input and exited
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_few_rows_are_masked_here_without_starting_a_process() -> None:
    texts = _corpus(50)
    with PhoneWorker(start_rows=1_000) as worker:
        masked, count = worker(texts)
        assert worker.pid is None
        assert masked.equals(mask_candidate_rows(texts)[0]) and count > 0


def test_a_killed_worker_leaves_no_phone_unmasked(caplog: pytest.LogCaptureFixture) -> None:
    texts = _corpus(2_000)
    expected = mask_candidate_rows(texts)
    with PhoneWorker(start_rows=1_000) as worker:
        _served(worker, texts)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="aios_dagster.lib.connectors.phone_worker"):
            after = worker(texts)
            again = worker(texts)
        assert after == expected and again == expected  # masked here, the same
        assert worker.failure is not None and worker.pid is None
        assert "masking phones in this process" in caplog.text
        assert caplog.text.count("phone worker") == 1  # one warning, not one per batch
