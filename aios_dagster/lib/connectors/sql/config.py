"""SQL source config: DSN validation, password redaction and identifier checks.

Kept apart from the reader so that the rules deciding what can reach SQL text (identifiers,
a single SELECT) and what can reach a message (a redacted DSN) are in one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aios_dagster.lib.retry import RetryPolicy

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
"""Plain SQL identifiers only: no quotes, spaces, dots or semicolons can get into SQL text."""

_SECRET_PARAMS = {"password", "sslpassword", "passfile"}
_FILE_SCHEMES = {"sqlite", "duckdb"}
_PG_SCHEMES = {"postgresql", "postgres"}


def _check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain SQL identifier (letters, digits, underscore; "
            "not starting with a digit; at most 63 characters)"
        )
    return value


def _quote(name: str) -> str:
    """Double-quote an identifier already checked by ``IDENTIFIER`` (so it has no quotes)."""
    return f'"{name}"'


def redact_dsn(dsn: str) -> str:
    """The DSN with the password (in userinfo or query) replaced by ``***``."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = urlencode(
        [
            (k, "***" if k.lower() in _SECRET_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    if not netloc and parts.scheme.lower() in _FILE_SCHEMES:
        # urlunsplit would write sqlite:/path: keep the form the config was written in.
        return f"{parts.scheme}://{parts.path}" + (f"?{query}" if query else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class SqlSourceConfig(BaseModel):
    """One incrementally extracted table (or query) of a SQL database."""

    # hide_input_in_errors: a rejected dsn must not be echoed (with its password) in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str = Field(
        description=(
            "postgresql://user[:password]@host:port/db, sqlite:///abs/path.db or "
            "duckdb:///abs/path.duckdb"
        )
    )
    table: str | None = Field(
        default=None, description="Table to read, optionally schema-qualified (schema.table)."
    )
    query: str | None = Field(
        default=None,
        description="A single SELECT used as a subquery (instead of table), e.g. a join.",
    )
    columns: list[str] | None = Field(
        default=None,
        description="Columns to read (default: all). Watermark and id are always read.",
    )
    watermark_column: str = Field(
        description="Column that increases whenever a row changes (e.g. updated_at)."
    )
    id_column: str = Field(description="Record id: tie-breaker within one watermark value.")
    batch_rows: int = Field(default=50_000, ge=1, description="Rows per batch (memory bound).")
    max_rows_per_run: int | None = Field(
        default=None, ge=1, description="Stop a run after this many rows (resumes next run)."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, description="Retries of transient errors.")
    backoff_s: float = Field(default=1.0, ge=0, description="First retry delay (doubles).")
    max_backoff_s: float = Field(default=30.0, ge=0, description="Longest delay between tries.")
    retry_total_s: float = Field(
        default=60.0,
        gt=0,
        description="No retry starts later than this after the first try of a query.",
    )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.max_retries + 1,
            first_wait_s=self.backoff_s,
            max_wait_s=self.max_backoff_s,
            total_s=self.retry_total_s,
        )

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: str) -> str:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in _PG_SCHEMES:
            if not parts.hostname:
                raise ValueError(f"postgres dsn {redact_dsn(value)!r} has no host")
        elif scheme in _FILE_SCHEMES:
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError(
                    f"{scheme} dsn must be {scheme}:///absolute/path (got {redact_dsn(value)!r})"
                )
        else:
            raise ValueError(
                f"dsn scheme {parts.scheme!r} is not supported: use postgresql://, sqlite:/// "
                "or duckdb:///"
            )
        return value

    @field_validator("table")
    @classmethod
    def _valid_table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) > 3:
            raise ValueError(f"table {value!r} has more than catalog.schema.table parts")
        for part in parts:
            _check_identifier(part, f"table {value!r}: part")
        return value

    @field_validator("query")
    @classmethod
    def _valid_query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        body = value.strip().rstrip(";").strip()
        # One statement only: the query is embedded as a subquery, and DuckDB would run any
        # statement before a ';' immediately.
        if ";" in body:
            raise ValueError("query must be a single SELECT statement (no ';')")
        if not re.match(r"(?is)^(select|with)\b", body):
            raise ValueError("query must start with SELECT or WITH")
        return body

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("columns must not be empty (leave it out to read all columns)")
        return [_check_identifier(c, "column") for c in value]

    @field_validator("watermark_column", "id_column")
    @classmethod
    def _valid_key_column(cls, value: str) -> str:
        return _check_identifier(value, "column")

    @model_validator(mode="after")
    def _table_xor_query(self) -> SqlSourceConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table or query")
        return self

    @property
    def dialect(self) -> Literal["postgres", "sqlite", "duckdb"]:
        scheme = urlsplit(self.dsn).scheme.lower()
        if scheme in _PG_SCHEMES:
            return "postgres"
        return "sqlite" if scheme == "sqlite" else "duckdb"

    @property
    def file_path(self) -> Path:
        """The database file of a sqlite/duckdb DSN."""
        return Path(urlsplit(self.dsn).path)

    @property
    def password(self) -> str | None:
        parts = urlsplit(self.dsn)
        if parts.password:
            return parts.password
        for key, val in parse_qsl(parts.query):
            if key.lower() == "password" and val:
                return val
        return None
