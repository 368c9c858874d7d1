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
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, StreamConfig
from nats.js.client import JetStreamContext

from aios_dagster.lib.connectors.nats.config import NatsSourceConfig, _redact
from aios_dagster.lib.connectors.nats.decode import META_COLUMNS, _parse, _preview, _to_table
from aios_dagster.lib.connectors.nats.session import _ACK_TIMEOUT_S, _API_TIMEOUT_S, _Session
from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    Reject,
    SourceBatch,
    TransientSourceError,
)

__all__ = ["META_COLUMNS", "NatsReader", "NatsSourceConfig"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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
            sub = session.run(self.bind(js))
            for _ in range(self.config.max_batches):
                msgs = session.run(self._next_messages(js, sub))
                if not msgs:
                    return
                yield self._batch(msgs, session)
        finally:
            session.close()

    async def bind(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        """The durable pull consumer (stream and consumer created or checked first)."""
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
