"""The landing loop every connector kind shares: read, mask, conform, contract, write, then advance.

Per batch, in this order, and only in this order:

1. PII policy (tokenize / mask / drop per column) — nothing unmasked exists after this step;
2. schema conformance to the declared landed schema (drift reported by column name);
3. contract validation, split into ``raw_<dataset>`` and ``quarantine_<dataset>``, both written
   as the part ``ingest_date=<day>/<batch_id>`` (so a re-landed batch replaces itself);
4. the cursor is saved, then the source is acknowledged (JetStream ``ack``).

A crash anywhere before 4 re-reads the batch next time; nothing is skipped and, because parts are
named after the deterministic batch id and staging keeps the latest row per record id, nothing
is duplicated either.

A batch stays in Arrow from the reader to its Parquet parts (``batch_steps``). The batches
overlap: while one is conformed and validated (steps 2-3), the next is masked (step 1) in a
thread of its own and the one before is written (step 3's write) in another; step 4 for a batch
still waits for its own write, in batch order. A batch a bus wants acknowledged is landed and
settled before the next one is read, so it overlaps nothing.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from aios_dagster.lib.connectors.batch_steps import MaskedBatch, mask_batch, split_masked
from aios_dagster.lib.connectors.connector_report import ConnectorReport
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.phone_worker import PhoneWorker
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.connectors.pii_policy import TokenCache
from aios_dagster.lib.connectors.source import SourceBatch, SourceReader
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.runner import Contract
from aios_dagster.lib.lake import LakeResource

__all__ = ["ConnectorReport", "build_reader", "run_connector"]

_READERS: dict[str, tuple[str, str, str]] = {
    "files": ("aios_dagster.lib.connectors.files_source", "FilesSourceConfig", "FilesReader"),
    "mailbox": (
        "aios_dagster.lib.connectors.mailbox_source",
        "MailboxSourceConfig",
        "MailboxReader",
    ),
    "sql": ("aios_dagster.lib.connectors.sql_source", "SqlSourceConfig", "SqlReader"),
    "http": ("aios_dagster.lib.connectors.http_source", "HttpSourceConfig", "HttpReader"),
    "nats": ("aios_dagster.lib.connectors.nats_source", "NatsSourceConfig", "NatsReader"),
}


def build_reader(spec: ConnectorSpec) -> SourceReader:
    """The reader for ``spec``'s kind (its source already templated by the Component)."""
    module_name, config_name, reader_name = _READERS[spec.kind]
    module = importlib.import_module(module_name)
    config_cls: type[BaseModel] = getattr(module, config_name)
    try:
        config = config_cls.model_validate(spec.source)
    except Exception as exc:
        raise ValueError(f"connector {spec.name} ({spec.path}): invalid source: {exc}") from exc
    reader: SourceReader = getattr(module, reader_name)(config)
    return reader


def run_connector(
    spec: ConnectorSpec,
    reader: SourceReader,
    contract: Contract,
    *,
    lake: LakeResource,
    pii: PiiMasker,
    cursors: CursorStore,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_batches: int | None = None,
    log: Any = None,
) -> ConnectorReport:
    """Land every batch after the saved cursor; the cursor advances after each durable write.

    Three batches are in flight at most: the next one being masked, this one being validated
    and the previous one being written (the regex, hash-table and Parquet kernels run outside
    Python's lock, so the stages share the cores). Its cursor is saved, and the source
    acknowledged, only once both parts are written, in batch order. When reading fails, the
    batches read before it are still landed and their cursors saved, as without the overlap.
    Phones are matched in a ``PhoneWorker``'s process once a batch brings enough of them:
    their matcher is Python, and would hold the lock the other stages need.
    """
    tokens = TokenCache(pii)
    with (
        cursors.exclusive(spec.name),
        contextlib.ExitStack() as stack,
        ThreadPoolExecutor(1, thread_name_prefix=f"write {spec.name}") as writer,
        ThreadPoolExecutor(1, thread_name_prefix=f"pii {spec.name}") as step1,
        ThreadPoolExecutor(1, thread_name_prefix=f"mask {spec.name}") as masking,
        PhoneWorker() as phones,
    ):
        report = ConnectorReport(connector=spec.name, source=reader.describe())
        report.cursor = cursors.load(spec.name)
        source = reader.batches(report.cursor)
        stack.callback(getattr(source, "close", lambda: None))  # readers release on close
        batches = iter(source)
        pending: list[tuple[Future[None] | None, SourceBatch, str]] = []

        def settle() -> None:
            """Wait for the batch in flight to be written, then save its cursor and ack."""
            while pending:
                written, done, message = pending.pop()
                if written is not None:
                    written.result()
                cursors.save(spec.name, done.cursor)
                report.cursor = done.cursor
                if done.ack is not None:
                    done.ack()
                if log is not None:
                    log.info(message)

        def land(batch: SourceBatch, masked: Future[MaskedBatch] | None) -> None:
            """Steps 2-3 of a masked batch, then its write in the background (after the
            previous batch is settled)."""
            split = None
            if masked is not None:
                split = split_masked(
                    spec, masked.result(), contract, lake=lake, ingested_at=now(), report=report
                )
            message = (
                f"{spec.name}: landed batch {batch.batch_id} from {batch.source} "
                f"({report.rows_landed} rows landed, {report.records_quarantined} "
                "quarantined so far)"
            )
            settle()
            written = writer.submit(split.write, lake) if split is not None else None
            pending.append((written, batch, message))
            if batch.ack is not None:
                settle()  # a bus wants its ack before the reader fetches the next batch

        ahead: tuple[SourceBatch, Future[MaskedBatch] | None] | None = None
        taken = 0  # batches with rows or rejects, as ``max_batches`` counts them
        try:
            while max_batches is None or taken < max_batches:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except BaseException:
                    if ahead is not None:
                        land(*ahead)  # what was read before the failure still lands
                        ahead = None
                    raise
                # A batch may only move the cursor (an empty last page): nothing to land.
                masked = None
                if batch.table.num_rows or batch.rejects:
                    taken += 1
                    masked = step1.submit(
                        mask_batch, spec, batch, tokens, masking=masking, phones=phones
                    )
                if ahead is not None:
                    land(*ahead)  # while this batch is being masked
                ahead = (batch, masked)
                if batch.ack is not None:
                    land(*ahead)
                    ahead = None
            if ahead is not None:
                land(*ahead)
                ahead = None
        finally:
            # The batch before a failure is made durable (and its cursor saved) as before;
            # if its write failed too, that error is the one raised.
            settle()
            report.phone_matching = phones.summary()
    if report.drift.any and log is not None:
        log.warning(f"{spec.name}: schema drift in {report.source}: {report.drift.describe()}")
    return report
