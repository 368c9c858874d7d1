"""Named random streams derived from one seed.

Each part of the synthetic world (customers, the ledger, each week of mail, labels, the fraud
wave) draws from its own stream. That is what keeps the reference window byte-identical when
drift is switched on: turning on the fraud wave only consumes numbers from streams that the
reference window never reads. Streams are derived with SHA-256 rather than ``hash()`` so they do
not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def substream_seed(seed: int, *labels: object) -> int:
    """A 64-bit seed for the stream named ``labels`` under ``seed``."""
    key = ":".join([str(seed), *(str(label) for label in labels)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def py_rng(seed: int, *labels: object) -> random.Random:
    """A ``random.Random`` for one named stream (cheap scalar draws, text choices)."""
    return random.Random(substream_seed(seed, *labels))


def np_rng(seed: int, *labels: object) -> np.random.Generator:
    """A numpy generator for one named stream (vectorised draws, the ledger)."""
    return np.random.default_rng(substream_seed(seed, *labels))
