"""What a failed Triton call means: transient (worth retrying) or permanent (fail at once).

The classification is the one decision every retry, failover and circuit breaker in this
package rests on, so it lives in one place. Permanent errors are raised as
``TritonPermanentError``: asset code converts them into ``dg.Failure(allow_retries=False)``
(``is_permanent``), because retrying a wrong shape or a model that is not loaded only delays
the same answer.
"""

from __future__ import annotations

import re
from typing import Literal

from tritonclient.utils import InferenceServerException

Outcome = Literal["transient", "invalid", "model_unavailable"]

_TRANSIENT_STATUSES = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
        "StatusCode.RESOURCE_EXHAUSTED",
    }
)
_INVALID_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND"})
# What a connection that broke (server killed, restarting, a proxy in between) looks like when
# gRPC reports it without one of the statuses above.
_TRANSIENT_MARKERS = (
    "connection",
    "connect to",
    "socket closed",
    "broken pipe",
    "stream removed",
    "rst_stream",
    "goaway",
)
# Triton answers "Request for unknown model: 'm' has no available versions" (NOT_FOUND) when a
# model is unloaded: a state of the deployment, not of the network, so never retried.
_MODEL_UNAVAILABLE_MARKER = "unknown model"
# A server that restarted has forgotten our shared-memory registrations (NOT_FOUND).
SHM_FORGOTTEN_MARKER = "unable to find shared memory region"
_EXPECTED_SHAPE = re.compile(r"expected \[([^\]]*)\]", re.IGNORECASE)


class TritonInferenceError(RuntimeError):
    """A Triton call failed; the message names the model, the version and what failed."""


class TritonPermanentError(TritonInferenceError):
    """A failure no retry can fix: bad input, a model not loaded, a config that disagrees.

    Raised at once, never retried by the resource; callers should not retry it either.
    """


class TritonTransientError(TritonInferenceError):
    """Transient failures outlasted the resource's retry budget (or every breaker is open).

    The servers may come back: a later run can succeed, but this call already retried.
    """


def server_message(exc: InferenceServerException) -> str:
    return str(exc.message() or "")


def classify(exc: InferenceServerException) -> Outcome:
    """Which of the three things a failed request means (decides retry and breaker)."""
    message = server_message(exc).lower()
    if _MODEL_UNAVAILABLE_MARKER in message:
        return "model_unavailable"
    if SHM_FORGOTTEN_MARKER in message:
        return "transient"  # the server restarted between registering a region and using it
    status = str(exc.status() or "")
    if status in _INVALID_STATUSES:
        return "invalid"
    if status in _TRANSIENT_STATUSES or any(marker in message for marker in _TRANSIENT_MARKERS):
        return "transient"
    return "invalid"


def is_transient(exc: BaseException) -> bool:
    """True for server errors worth retrying on the same or another replica."""
    return isinstance(exc, InferenceServerException) and classify(exc) == "transient"


def is_permanent(exc: BaseException) -> bool:
    """True for failures that cannot succeed on retry, raised by this package or by Triton.

    For the asset layer: ``raise dg.Failure(str(exc), allow_retries=False) from exc`` when this
    is true. ``TritonTransientError`` is False: the resource already spent its retry budget,
    but a later run may succeed.
    """
    if isinstance(exc, TritonPermanentError):
        return True
    return isinstance(exc, InferenceServerException) and classify(exc) != "transient"


def rejected_input(
    what: str,
    url: str,
    input_name: str,
    shape: tuple[int, ...],
    exc: InferenceServerException,
) -> TritonPermanentError:
    """The input error, worded so the fix is obvious: tensor, expected and given shape."""
    match = _EXPECTED_SHAPE.search(server_message(exc))
    if match is not None:
        expected = "[" + ", ".join(d.strip() for d in match.group(1).split(",")) + "]"
        return TritonPermanentError(
            f"{what} was rejected by {url} (not retried): input {input_name!r} expects "
            f"shape {expected} (batch, features) but was given {shape} float32; "
            f"server said: {exc}"
        )
    return TritonPermanentError(
        f"{what} was rejected by {url} (not retried): input {input_name!r} given features of "
        f"shape {shape} dtype float32; server said: {exc}"
    )


def model_not_served(
    what: str,
    url: str,
    model_name: str,
    model_version: str,
    pinned_from: str,
    exc: InferenceServerException,
) -> TritonPermanentError:
    """The model (or the version this call is bound to) is not loaded on ``url``.

    Not retried and not sent elsewhere: it is a deployment state (unloaded, or replicas that
    disagree on versions), and answering from another replica would hide it.
    """
    if not model_version:
        problem = f"model {model_name!r} is not loaded on replica {url}"
    elif pinned_from:
        problem = (
            f"replica {url} does not serve model {model_name!r} version {model_version}, "
            f"which this call is pinned to (chunk 0 was answered by it on {pinned_from})"
        )
    else:
        problem = (
            f"replica {url} does not serve the requested model {model_name!r} "
            f"version {model_version}"
        )
    return TritonPermanentError(
        f"{what}: {problem}; not retried: load it on every replica "
        f"(TritonResource.load_model) and run again. Server said: {exc}"
    )
