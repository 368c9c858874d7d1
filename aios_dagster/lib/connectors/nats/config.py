"""NATS source config: servers, stream, durable consumer and batching, plus URL redaction.

Kept apart from the reader so that what a connector may configure, and how server URLs are
stripped of credentials before they reach a message, read on their own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME_PATTERN = r"^[^.\s*>/\\]+$"  # JetStream stream / consumer names


class NatsSourceConfig(BaseModel):
    """The ``source:`` block of a ``kind: nats`` connector.

    ``ack_wait_s`` must exceed the time to land one batch (mask, validate, write Parquet, save
    the cursor): past it JetStream redelivers the batch while it is still being landed, which
    is harmless (dedup) but wasteful. ``max_batches`` caps one run so that a busy stream cannot
    keep a run going forever; a run also stops as soon as the consumer has nothing pending.
    """

    model_config = ConfigDict(extra="forbid")

    servers: str | list[str] = Field(
        description="NATS URL(s), e.g. nats://127.0.0.1:4222 (a list or a comma-separated str)"
    )
    stream: str = Field(pattern=_NAME_PATTERN)
    subject: str = Field(min_length=1, description="filter subject; wildcards allowed")
    durable: str = Field(pattern=_NAME_PATTERN, description="durable pull consumer name")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    fetch_timeout_s: float = Field(default=2.0, gt=0)
    ack_wait_s: float = Field(default=300.0, gt=0)
    max_batches: int = Field(default=100, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    create_stream: bool = False

    @field_validator("servers")
    @classmethod
    def _non_empty_servers(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not [part for url in urls for part in url.split(",") if part.strip()]:
            raise ValueError("servers: at least one NATS URL is needed")
        return value

    @field_validator("subject")
    @classmethod
    def _subject_has_no_spaces(cls, value: str) -> str:
        if any(ch.isspace() for ch in value):
            raise ValueError(f"subject {value!r} must not contain whitespace")
        return value

    @property
    def server_urls(self) -> list[str]:
        """The servers as nats-py wants them: a list of URLs, each with a scheme."""
        raw = [self.servers] if isinstance(self.servers, str) else self.servers
        urls = [part.strip() for url in raw for part in url.split(",") if part.strip()]
        return [url if "://" in url else f"nats://{url}" for url in urls]

    @property
    def public_servers(self) -> str:
        """The server URLs without credentials (user:password@ or token@), for messages."""
        return ",".join(_redact(url) for url in self.server_urls)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"
