"""Deterministic synthetic source systems for a bank's support-email triage.

See :mod:`aios_dagster.lib.generator.generate` for the layout written and the public API.
"""

from __future__ import annotations

from aios_dagster.lib.generator.generate import (
    PRIORITIES,
    QUEUES,
    GenerationManifest,
    deliver_new_emails,
    generate_reference_data,
)
from aios_dagster.lib.generator.labels import deliver_labels

__all__ = [
    "PRIORITIES",
    "QUEUES",
    "GenerationManifest",
    "deliver_labels",
    "deliver_new_emails",
    "generate_reference_data",
]
