"""CSV and SQL connectors: source tables read into frames with every column as declared.

CSV columns are read as strings first so a malformed value becomes a contract failure on that
record (quarantined with the rule) instead of a type error that fails the whole file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd


def read_csv_as_strings(path: Path) -> pd.DataFrame:
    """Read a CSV export with all columns as strings (an empty cell is null)."""
    if not path.exists():
        raise FileNotFoundError(f"CSV source {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return frame.astype(object).where(frame.notna(), None)


def read_sqlite_table(db_path: Path, query: str, *, chunk_rows: int = 50_000) -> pd.DataFrame:
    """Run a query against a SQLite database in chunks (bounded driver memory)."""
    if not db_path.exists():
        raise FileNotFoundError(f"SQL source {db_path} does not exist")
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        chunks = list(pd.read_sql_query(query, conn, chunksize=chunk_rows))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
