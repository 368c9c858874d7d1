"""Transient versus permanent: the decision every retry and breaker of the serving layer uses.

Pure: the exceptions are built the way ``tritonclient.grpc`` builds them from a gRPC status
(``status="StatusCode.<CODE>"``), with messages Triton and gRPC really send.
"""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from aios_dagster.lib.inference.batch import ModelSignatureError
from aios_dagster.lib.serving.errors import classify, is_permanent, is_transient
from aios_dagster.lib.serving.triton import (
    TritonInferenceError,
    TritonPermanentError,
    TritonTransientError,
)


def _server(status: str | None, message: str) -> InferenceServerException:
    return InferenceServerException(message, status=status)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses; Connection refused"),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"),
        ("StatusCode.RESOURCE_EXHAUSTED", "exceeds the maximum queue size"),
        ("StatusCode.UNKNOWN", "Socket closed"),
        ("StatusCode.INTERNAL", "Received RST_STREAM with error code 2"),
        (None, "failed to connect to 127.0.0.1:8001"),
        # A server that restarted forgot the region: registering again fixes it.
        ("StatusCode.NOT_FOUND", "Unable to find shared memory region: 'aios_infer_1_0'"),
    ],
)
def test_transient_failures_are_retried(status: str | None, message: str) -> None:
    exc = _server(status, message)
    assert classify(exc) == "transient"
    assert is_transient(exc) and not is_permanent(exc)


@pytest.mark.parametrize(
    ("status", "message", "outcome"),
    [
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'features'", "invalid"),
        ("StatusCode.INVALID_ARGUMENT", "unexpected inference input 'features'", "invalid"),
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'm' is not found",
            "model_unavailable",
        ),
        # Triton says UNAVAILABLE for an unloaded model: still a deployment state, not the net.
        (
            "StatusCode.UNAVAILABLE",
            "Request for unknown model: 'm' has no available versions",
            "model_unavailable",
        ),
        ("StatusCode.INTERNAL", "failed to load 'm': bad config", "invalid"),
    ],
)
def test_permanent_failures_are_not(status: str, message: str, outcome: str) -> None:
    exc = _server(status, message)
    assert classify(exc) == outcome
    assert is_permanent(exc) and not is_transient(exc)


def test_the_error_classes_say_which_kind_they_are() -> None:
    assert is_permanent(TritonPermanentError("wrong shape"))
    assert is_permanent(ModelSignatureError("catalog and server disagree"))
    assert isinstance(ModelSignatureError("x"), ValueError)  # callers that catch ValueError
    assert not is_permanent(TritonTransientError("retry budget spent"))
    assert issubclass(TritonTransientError, TritonInferenceError)
    assert not is_permanent(ValueError("not a Triton error"))
