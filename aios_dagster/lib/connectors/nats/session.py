"""One private asyncio loop and NATS connection, bridging nats-py to the synchronous runtime.

Kept apart from the reader so that how nats-py errors become source errors (transient or
permanent), and how unacknowledged messages are handed back on close, read on their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from aios_dagster.lib.connectors.nats.config import NatsSourceConfig
from aios_dagster.lib.connectors.source import (
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)

# The reader's logger name, shared by its parts, so log filters written for the connector
# keep matching whichever module does the logging.
log = logging.getLogger("aios_dagster.lib.connectors.nats_source")

T = TypeVar("T")

_ACK_TIMEOUT_S = 5.0  # per acknowledgement round trip (they run concurrently)
_API_TIMEOUT_S = 5.0  # JetStream API requests (stream/consumer info and creation)
# Connection attempts per server before giving up. A refused connection fails in ~1 s per retry,
# so an unreachable server surfaces as a TransientSourceError within a few seconds instead of
# nats-py's default (60 attempts, 2 s apart: two minutes of a run that looks hung).
_RECONNECT_ATTEMPTS = 2
_RECONNECT_WAIT_S = 1.0
_AUTH_ERRORS = (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError)


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
