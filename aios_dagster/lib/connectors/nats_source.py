"""The ``nats`` connector kind: JSON messages from a NATS JetStream stream, landed in batches.

A connector reads one *filter subject* of one stream through a *durable pull consumer*. The
durable consumer, not the cursor, is the authoritative position: JetStream remembers which
messages were acknowledged, so a run picks up exactly what earlier runs did not finish, whatever
the cursor store says. That is also why the delivery guarantee rests on *when* we acknowledge:

* the runtime lands a ``SourceBatch`` (Parquet part, quarantine, cursor saved) and only then
  calls ``batch.ack()``; the ack is a *double ack* (``ack_sync``), confirmed by the server, so
  ``ack()`` returning means JetStream will not deliver those messages again;
* anything not acknowledged (a crash, an exception while landing, a closed generator) is
  delivered again: at once for a reader that shuts down cleanly (it NAKs what it still holds),
  after ``ack_wait_s`` for a process that died. Redelivery can duplicate rows, never lose them;
  dedup by record id happens downstream, and a redelivered batch usually has the same
  ``batch_id`` (``{stream}-{first}-{last}-{digest}``) so its lake part is rewritten in place.

The runtime is synchronous; nats-py is asyncio-only. Each ``batches()`` generator therefore owns
a private event loop (``asyncio.new_event_loop`` + ``run_until_complete``) that lives exactly as
long as the generator: the connection and the fetched ``Msg`` objects stay valid across
``yield``, and ``batch.ack()`` runs its acknowledgements on that same loop. The loop only runs
while the reader is doing something, so while the runtime lands a batch nothing answers the
server's PINGs; the server declares a connection stale after about two unanswered PINGs (minutes
by default), far longer than landing a batch takes, and nats-py reconnects if it happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
import pyarrow as pa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, StreamConfig
from nats.js.client import JetStreamContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    Reject,
    SourceBatch,
    SourceError,
    TransientSourceError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

META_COLUMNS = ("_stream_seq", "_subject")
"""Columns the reader adds to every row; a payload that already has one of them is rejected."""

_PREVIEW_CHARS = 500  # how much of a rejected payload goes to quarantine
_ACK_TIMEOUT_S = 5.0  # per acknowledgement round trip (they run concurrently)
_API_TIMEOUT_S = 5.0  # JetStream API requests (stream/consumer info and creation)
# Connection attempts per server before giving up. A refused connection fails in ~1 s per retry,
# so an unreachable server surfaces as a TransientSourceError within a few seconds instead of
# nats-py's default (60 attempts, 2 s apart: two minutes of a run that looks hung).
_RECONNECT_ATTEMPTS = 2
_RECONNECT_WAIT_S = 1.0
_AUTH_ERRORS = (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError)
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


class _Session:
    """One private event loop and one NATS connection, alive as long as a generator or probe.

    Everything async runs through ``run`` so that nats-py errors become source errors with the
    server named, and so that nothing touches the loop once it is closed.
    """

    def __init__(self, config: NatsSourceConfig, source: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            # run_until_complete cannot nest inside a running loop; say so instead of failing
            # with asyncio's generic message deep inside a batch.
            raise RuntimeError(
                "NatsReader is synchronous; call it from a thread without a running event loop"
            )
        self.config = config
        self.source = source
        self.loop = asyncio.new_event_loop()
        self.nc: Client | None = None
        self.in_flight: dict[int, list[Msg]] = {}  # batch number -> messages not yet acked
        self.acked = 0  # batches acknowledged so far
        self._errors: list[BaseException] = []

    @property
    def closed(self) -> bool:
        return self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T], record: str | None = None) -> T:
        if self.closed:
            coro.close()
            raise RuntimeError(f"{self.source}: the reader is closed (its generator finished)")
        try:
            return self.loop.run_until_complete(coro)
        except SourceError:
            raise
        except Exception as exc:
            raise self._source_error(exc, record) from exc

    def _source_error(self, exc: Exception, record: str | None) -> SourceError:
        servers = self.config.public_servers
        if isinstance(exc, _AUTH_ERRORS):
            return PermanentSourceError(self.source, record, f"NATS at {servers} refused: {exc!r}")
        if isinstance(exc, nats.js.errors.NotFoundError):
            return PermanentSourceError(self.source, record, f"not found on {servers}: {exc}")
        if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.js.errors.ServerError):
            return TransientSourceError(self.source, record, f"JetStream at {servers}: {exc}")
        if isinstance(exc, nats.js.errors.APIError):  # 4xx: a request retrying cannot fix
            return PermanentSourceError(self.source, record, f"JetStream at {servers}: {exc}")
        if isinstance(exc, nats.errors.NoRespondersError):
            return TransientSourceError(
                self.source, record, f"JetStream at {servers} did not answer (not enabled there?)"
            )
        if isinstance(exc, nats.errors.Error | OSError | TimeoutError):
            return TransientSourceError(self.source, record, f"NATS at {servers}: {exc!r}")
        return PermanentSourceError(self.source, record, f"NATS at {servers}: {exc!r}")

    async def _on_error(self, exc: Exception) -> None:
        # nats-py's default callback logs every failed attempt as an ERROR with a traceback;
        # keep them for the final message instead and log quietly.
        self._errors.append(exc)
        log.debug("nats %s: %r", self.config.public_servers, exc)

    def connect(self) -> Client:
        async def _connect() -> Client:
            return await nats.connect(
                servers=self.config.server_urls,
                connect_timeout=self.config.connect_timeout_s,  # annotated int, float works
                max_reconnect_attempts=_RECONNECT_ATTEMPTS,
                reconnect_time_wait=_RECONNECT_WAIT_S,
                error_cb=self._on_error,
                name=f"aios_dagster {self.config.durable}",
            )

        try:
            self.nc = self.loop.run_until_complete(_connect())
        except Exception as exc:
            cause = self._errors[-1] if self._errors else exc
            # Wrong credentials stay wrong; anything else (refused, timed out) may pass next time.
            kind = PermanentSourceError if isinstance(cause, _AUTH_ERRORS) else TransientSourceError
            raise kind(
                self.source,
                None,
                f"cannot connect to NATS at {self.config.public_servers}: {cause!r}",
            ) from exc
        return self.nc

    def close(self) -> None:
        """NAK what was never acknowledged, close the connection, then the loop.

        The NAK makes JetStream redeliver an unlanded batch to the next run at once instead of
        after ``ack_wait_s``; it is best effort (a dead process cannot send it, and then
        ``ack_wait_s`` does the same job).
        """
        if self.closed:
            return
        try:
            if self.nc is not None and not self.nc.is_closed:
                pending = [msg for msgs in self.in_flight.values() for msg in msgs]
                self.in_flight.clear()
                try:
                    self.loop.run_until_complete(
                        asyncio.wait_for(_nak_and_close(self.nc, pending), _ACK_TIMEOUT_S)
                    )
                except Exception as exc:  # closing must not hide the error that ended the run
                    log.debug("nats %s: close failed: %r", self.config.public_servers, exc)
        finally:
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


async def _nak_and_close(nc: Client, msgs: list[Msg]) -> None:
    for msg in msgs:
        try:
            await msg.nak()
        except nats.errors.Error as exc:
            log.debug("nak of %s failed: %r", msg.reply, exc)
    await nc.close()  # flushes the NAKs before closing


class NatsReader:
    """``SourceReader`` for one filter subject of one JetStream stream (see the module doc).

    ``batches(cursor)`` ignores ``cursor`` for positioning: the durable consumer knows what was
    acknowledged, and a cursor can run ahead of it (a batch of new messages landed while older,
    unacknowledged ones were waiting for redelivery), so starting from it could skip messages.
    The cursor it yields (``{"stream_seq": <highest sequence in the batch>}``) is informational
    and feeds ``has_new`` when the consumer does not exist yet.
    """

    def __init__(self, config: NatsSourceConfig | Mapping[str, Any]) -> None:
        self.config = config if isinstance(config, NatsSourceConfig) else NatsSourceConfig(**config)
        hosts = ",".join(_redact(url).split("://", 1)[1] for url in self.config.server_urls)
        self._source = f"nats://{hosts}/{self.config.stream}/{self.config.subject}"

    def describe(self) -> str:
        return self._source

    # -- reading -------------------------------------------------------------------------------

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        """Yield up to ``max_batches`` batches of ``batch_size`` messages, oldest first.

        Consume it with ``contextlib.closing`` (or exhaust it): closing is what closes the
        connection and hands unacknowledged messages back to JetStream.
        """
        del cursor  # the durable consumer is the position (see the class doc)
        session = _Session(self.config, self._source)
        try:
            nc = session.connect()
            js = nc.jetstream(timeout=_API_TIMEOUT_S)
            sub = session.run(self._bind(js))
            for _ in range(self.config.max_batches):
                msgs = session.run(self._next_messages(js, sub))
                if not msgs:
                    return
                yield self._batch(msgs, session)
        finally:
            session.close()

    async def _bind(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        await self._ensure_stream(js)
        await self._ensure_consumer(js)
        return await js.pull_subscribe_bind(durable=self.config.durable, stream=self.config.stream)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        cfg = self.config
        try:
            await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            if not cfg.create_stream:
                raise PermanentSourceError(
                    self._source,
                    None,
                    f"stream {cfg.stream!r} does not exist on {cfg.public_servers}; the producer "
                    "owns it (set create_stream: true only for tests and demos)",
                ) from None
            log.info("creating JetStream stream %s for %s", cfg.stream, cfg.subject)
            await js.add_stream(StreamConfig(name=cfg.stream, subjects=[cfg.subject]))

    def _consumer_config(self) -> ConsumerConfig:
        cfg = self.config
        return ConsumerConfig(
            name=cfg.durable,
            durable_name=cfg.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait_s,
            filter_subject=cfg.subject,
            # Room for one batch in flight plus one left unacknowledged by a crashed run, or a
            # fetch would silently stop at the server default (1000 outstanding messages).
            max_ack_pending=max(1000, 2 * cfg.batch_size),
        )

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        cfg = self.config
        try:
            info = await js.consumer_info(cfg.stream, cfg.durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(cfg.stream, config=self._consumer_config())
            return
        if (info.config.filter_subject or ">") != cfg.subject:
            # Reading on would land another subject's messages under this connector's name.
            raise PermanentSourceError(
                self._source,
                None,
                f"durable consumer {cfg.durable!r} on stream {cfg.stream!r} filters "
                f"{info.config.filter_subject!r}, not {cfg.subject!r}; use another durable name",
            )
        if (
            abs((info.config.ack_wait or 0) - cfg.ack_wait_s) > 1e-3
            or (info.config.max_ack_pending or 0) < cfg.batch_size
        ):
            # ack_wait and max_ack_pending are editable on a durable consumer: follow the config.
            try:
                await js.add_consumer(cfg.stream, config=self._consumer_config())
            except nats.js.errors.APIError as exc:
                log.warning("%s: could not update consumer %s: %s", self._source, cfg.durable, exc)

    async def _next_messages(
        self, js: JetStreamContext, sub: JetStreamContext.PullSubscription
    ) -> list[Msg]:
        """Up to ``batch_size`` messages; empty when the consumer has nothing to deliver.

        The consumer info check lets a run end at once when nothing is pending or awaiting
        acknowledgement, instead of waiting ``fetch_timeout_s`` on an idle stream. Messages that
        are unacknowledged (a crashed run's batch) are worth one fetch: their redelivery may be
        due within ``fetch_timeout_s``.
        """
        cfg = self.config
        info = await js.consumer_info(cfg.stream, cfg.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return []
        msgs: list[Msg] = []
        while len(msgs) < cfg.batch_size:
            try:
                got = await sub.fetch(cfg.batch_size - len(msgs), timeout=cfg.fetch_timeout_s)
            except TimeoutError:  # nothing (more) deliverable right now
                break
            msgs.extend(got)
            # A short fetch is the server saying "that is all for now"; only ask again when it
            # says more is pending (fetch returns early with what it has at hand).
            if not got or got[-1].metadata.num_pending == 0:
                break
        return msgs

    def _batch(self, msgs: list[Msg], session: _Session) -> SourceBatch:
        stream = self.config.stream
        seqs = [msg.metadata.sequence.stream for msg in msgs]
        rows: list[dict[str, Any]] = []
        refs: list[str] = []
        rejects: list[Reject] = []
        for msg, seq in zip(msgs, seqs, strict=True):
            record = f"{stream} seq {seq}"
            row, reject = _parse(msg.data, record)
            if reject is not None:
                rejects.append(reject)
                continue
            assert row is not None
            row["_stream_seq"] = seq
            row["_subject"] = msg.subject
            rows.append(row)
            refs.append(record)
        table, kept, conflicts = _to_table(rows)
        for index, column in conflicts.items():
            rejects.append(
                Reject(
                    record=refs[index],
                    rule="type_conflict",
                    value=_preview(json.dumps(rows[index], default=str)),
                )
            )
            log.info("%s: %s field %r conflicts with the batch", self._source, refs[index], column)
        # Range plus a digest of the exact sequences: a partial redelivery of the same range
        # (some messages acked, some not) must not overwrite the full batch's lake part.
        digest = hashlib.sha1(",".join(map(str, sorted(seqs))).encode(), usedforsecurity=False)
        batch_id = f"{stream}-{min(seqs)}-{max(seqs)}-{digest.hexdigest()[:8]}"
        key = len(session.in_flight) + session.acked  # unique even if a batch_id repeats
        session.in_flight[key] = msgs
        return SourceBatch(
            sparse=True,
            table=table,
            batch_id=batch_id,
            source=self._source,
            cursor={"stream_seq": max(seqs)},
            rejects=rejects,
            ack=self._acker(session, key, batch_id),
            row_refs=[refs[i] for i in kept],
        )

    def _acker(self, session: _Session, key: int, batch_id: str) -> Callable[[], None]:
        done = False

        def ack() -> None:
            """Double-ack every message of the batch (rejected ones too: they are quarantined).

            Call only once the batch is durably landed. Idempotent. Raises when the server did
            not confirm; those messages are then redelivered (duplicates, never a gap).
            """
            nonlocal done
            if done:
                return
            if session.closed:
                raise RuntimeError(
                    f"{self._source} [{batch_id}]: acknowledged after the reader was closed; "
                    "the batch will be redelivered (call ack() before closing the generator)"
                )
            session.run(self._ack_all(session.in_flight[key], batch_id), record=batch_id)
            del session.in_flight[key]
            session.acked += 1
            done = True

        return ack

    async def _ack_all(self, msgs: list[Msg], batch_id: str) -> None:
        # Sent concurrently but in sequence order on one connection, which the server processes
        # in order: if the connection drops halfway, what got acknowledged is a prefix of the
        # batch, so a redelivered remainder never reuses this batch_id for fewer rows.
        results = await asyncio.gather(
            *(msg.ack_sync(timeout=_ACK_TIMEOUT_S) for msg in msgs), return_exceptions=True
        )
        failed = [
            msg
            for msg, result in zip(msgs, results, strict=True)
            if isinstance(result, BaseException)
            and not isinstance(result, nats.errors.MsgAlreadyAckdError)
        ]
        errors: list[BaseException] = []
        for msg in failed:  # one more try each: a double ack is idempotent
            try:
                await msg.ack_sync(timeout=_ACK_TIMEOUT_S)
            except nats.errors.MsgAlreadyAckdError:
                pass
            except (nats.errors.Error, TimeoutError) as exc:
                errors.append(exc)
        if errors:
            raise TransientSourceError(
                self._source,
                batch_id,
                f"{len(errors)} of {len(msgs)} acknowledgements not confirmed by "
                f"{self.config.public_servers} ({errors[0]!r}); those messages will be "
                "redelivered and deduplicated downstream",
            )

    # -- probing -------------------------------------------------------------------------------

    def has_new(self, cursor: Cursor) -> bool:
        """Is there anything a run would land? Creates nothing (a probe must not have effects).

        With the consumer in place: messages not yet delivered or not yet acknowledged. Without
        it (first run): the stream's last sequence differs from the cursor's (higher: new
        messages; lower: the stream was recreated).
        """
        cfg = self.config
        session = _Session(cfg, self._source)
        try:
            nc = session.connect()
            js = nc.jetstream(timeout=_API_TIMEOUT_S)
            info = session.run(self._probe(js))
        finally:
            session.close()
        if isinstance(info, ConsumerInfo):
            return (info.num_pending or 0) + (info.num_ack_pending or 0) > 0
        messages, last_seq = info
        return messages > 0 and last_seq != int(cursor.get("stream_seq", 0))

    async def _probe(self, js: JetStreamContext) -> ConsumerInfo | tuple[int, int]:
        cfg = self.config
        try:
            return await js.consumer_info(cfg.stream, cfg.durable)
        except nats.js.errors.NotFoundError:
            pass
        try:
            state = (await js.stream_info(cfg.stream)).state
        except nats.js.errors.NotFoundError:
            if cfg.create_stream:
                return (0, 0)  # a run would create it empty
            raise PermanentSourceError(
                self._source,
                None,
                f"stream {cfg.stream!r} does not exist on {cfg.public_servers}",
            ) from None
        return (state.messages, state.last_seq)


# -- payloads to rows ------------------------------------------------------------------------


def _preview(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."


def _parse(data: bytes, record: str) -> tuple[dict[str, Any] | None, Reject | None]:
    """One payload -> one row, or the reason it cannot be one (the rest of the batch goes on)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, Reject(record, "undecodable", _preview(data.decode("utf-8", "replace")))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None, Reject(record, "not_json", _preview(text))
    if not isinstance(value, dict):
        return None, Reject(record, "not_an_object", _preview(text))
    if any(column in value for column in META_COLUMNS):
        # Overwriting the producer's field would silently lose it; quarantine says why.
        return None, Reject(record, "reserved_field", _preview(text))
    return value, None


def _to_table(rows: list[dict[str, Any]]) -> tuple[pa.Table, list[int], dict[int, str]]:
    """Rows -> an Arrow table, typed by Arrow's inference over the whole batch.

    Why not ``pa.Table.from_pylist(rows)`` as is: it takes the column names from the *first*
    row only, silently dropping a field that first appears later; here the columns are the
    union of all keys in first-seen order (missing values are null), then ``_stream_seq``
    (int64) and ``_subject`` (string). Types are inferred (ints -> int64, ints mixed with floats
    -> double, objects -> struct, arrays -> list, all-null -> null) because the bus carries no
    schema: the connector's declared schema and contract downstream are what pin the types.

    When a field's values cannot share one type (``1`` in one message, ``"x"`` in another) the
    first-seen type wins and the later rows are returned as conflicts (row index -> column) to
    be rejected, so one odd producer cannot block the stream behind a batch that never lands.
    Returns the table, the indexes of the rows kept, and the conflicts.
    """
    meta = {"_stream_seq": pa.int64(), "_subject": pa.string()}
    names = [name for name in dict.fromkeys(k for row in rows for k in row) if name not in meta]
    conflicts: dict[int, str] = {}
    while True:
        kept = [i for i in range(len(rows)) if i not in conflicts]
        columns: dict[str, pa.Array] = {}
        failed: str | None = None
        for name in names:
            try:
                columns[name] = pa.array([rows[i].get(name) for i in kept])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                failed = name
                break
        if failed is None:
            break
        bad = _conflicting([(i, rows[i].get(failed)) for i in kept])
        if not bad:  # Arrow rejects the column although each value fits: keep none of them
            bad = [i for i in kept if rows[i].get(failed) is not None]
        for i in bad:
            conflicts[i] = failed
    for name, type_ in meta.items():
        columns[name] = pa.array([rows[i][name] for i in kept], type=type_)
    # from_arrays, not pa.table(dict): the latter imports pandas (a second, once) to sniff a frame
    return pa.Table.from_arrays(list(columns.values()), names=list(columns)), kept, conflicts


def _conflicting(values: list[tuple[int, Any]]) -> list[int]:
    """Indexes whose value does not fit the type of the values accepted before it."""
    accepted: list[Any] = []
    type_: pa.DataType = pa.null()
    bad: list[int] = []
    for index, value in values:
        try:
            pa.array([value], type=type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            try:  # may still fit by widening (int then float -> double); the slow path, rarely
                type_ = pa.array([*accepted, value]).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                bad.append(index)
                continue
        accepted.append(value)
    return bad
