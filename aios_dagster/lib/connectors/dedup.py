"""Reading a connector's dataset as staging sees it: the newest landed copy of each record.

Incremental sources land a record again when it changes (a SQL row with a newer watermark, a
replaced export file), and a batch re-read after a crash may overlap one already landed. Parts
carry ``_ingested_at`` and ``_batch_id`` so readers keep the newest copy per record id; dbt
staging does the same in SQL.
"""

from __future__ import annotations

import pandas as pd


def latest_records(frame: pd.DataFrame, record_id: str) -> pd.DataFrame:
    """The newest landed copy of each record (what staging reads), lineage columns dropped.

    Incremental sources land a changed record again; a re-read boundary row lands twice.
    """
    if "_ingested_at" in frame.columns and record_id in frame.columns:
        order = [c for c in ("_ingested_at", "_batch_id") if c in frame.columns]
        frame = frame.sort_values(order, kind="stable")
        has_id = frame[record_id].notna()
        frame = pd.concat([frame[has_id].drop_duplicates(record_id, keep="last"), frame[~has_id]])
    return frame.drop(columns=[c for c in frame.columns if c.startswith("_")]).reset_index(
        drop=True
    )
