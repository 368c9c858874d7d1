"""Which copy of a duplicated record lands.

Great Expectations' uniqueness rule fails *every* copy of a repeated value, so a Message-ID
delivered twice, or a customer listed twice by the CRM, quarantined all copies and none landed.
A contract may instead keep one copy and quarantine the others as ``duplicate_of(<kept copy>)``
(meta.contract ``on_duplicate``):

* ``keep_first``: the first copy in source order. For a mailbox and for a CRM export the copies
  carry no version, and the first is the original (later ones are re-deliveries); it is also the
  same copy every time the batch is re-read.
* ``keep_last``: the last copy in source order, for sources that list a record's versions
  oldest first (an incremental SQL read ordered by its watermark).
* ``quarantine_all`` (the default, GE's own meaning): no copy lands.

The kept copy is the first (or last) one that passes the contract's other rules, so a valid
copy lands even when an earlier copy is broken. Both evaluators name the same rows (GE and the
pandas fast path agree on uniqueness), so this applies to either verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

DuplicatePolicy = Literal["quarantine_all", "keep_first", "keep_last"]
DUPLICATE_POLICIES: tuple[str, ...] = ("quarantine_all", "keep_first", "keep_last")


@dataclass(frozen=True)
class Copies:
    """The copies to quarantine (row positions, ascending) and, for each, the copy kept."""

    index: np.ndarray
    kept: np.ndarray

    def rules(self, ref_of: Callable[[int], str] | None) -> np.ndarray:
        """``duplicate_of(<kept copy>)`` per quarantined copy: its source reference, else its
        position in the batch (the record id is the same for every copy, so it cannot)."""
        names = [ref_of(k) if ref_of is not None else str(k) for k in self.kept.tolist()]
        return np.array([f"duplicate_of({name})" for name in names], dtype=object)


def extra_copies(
    values: pd.Series,
    duplicated: np.ndarray,
    policy: DuplicatePolicy,
    other_failures: np.ndarray,
) -> Copies | None:
    """Split the rows a uniqueness rule failed into one kept copy per value and the rest.

    ``values`` is the column, ``duplicated`` the positions the rule failed (every copy),
    ``other_failures`` the positions failing any other rule. None means "quarantine every
    copy": the policy says so, or the values cannot be grouped (unhashable).
    """
    if policy == "quarantine_all" or len(duplicated) == 0:
        return None
    positions = np.sort(np.asarray(duplicated, dtype=np.int64))
    try:
        codes, _ = pd.factorize(values.take(positions), use_na_sentinel=True)
    except TypeError:
        return None
    broken = np.isin(positions, other_failures)
    order = positions if policy == "keep_first" else positions[::-1]
    group_of = dict(zip(positions.tolist(), codes.tolist(), strict=True))
    broken_at = dict(zip(positions.tolist(), broken.tolist(), strict=True))
    kept: dict[int, int] = {}
    for position in order.tolist():  # the first copy that passes the other rules wins
        group = group_of[position]
        if group not in kept or (broken_at[kept[group]] and not broken_at[position]):
            kept[group] = position
    later = [(p, kept[group_of[p]]) for p in positions.tolist() if kept[group_of[p]] != p]
    return Copies(
        index=np.array([p for p, _ in later], dtype=np.int64),
        kept=np.array([k for _, k in later], dtype=np.int64),
    )
