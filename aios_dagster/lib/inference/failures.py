"""Errors that cannot succeed on a retry end the step at once, saying what was wrong.

Transient Triton errors are retried inside ``TritonResource`` and nowhere else. What reaches
an asset and is permanent (a served model that disagrees with the catalog, a model that is not
loaded, features that are not finite) becomes a ``Failure`` that Dagster does not retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from aios_dagster.lib.serving.errors import is_permanent


@contextlib.contextmanager
def permanent_errors_fail_at_once(what: str) -> Iterator[None]:
    """Re-raise permanent errors of the block as ``Failure(allow_retries=False)``.

    ``what`` names the asset and the slice of data (e.g. the day) for the message. A
    ``ValueError`` is permanent: it is how invalid input (non-finite features) is reported.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ValueError) or is_permanent(exc):
            raise dg.Failure(description=f"{what}: {exc}", allow_retries=False) from exc
        raise
