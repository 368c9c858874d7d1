"""The handler's steps: each takes the work item a pass carries and adds what it gives.

They reuse the batch path's own pieces, so a decision made here is the decision the batch
path would make for the same email: the mailbox connector's parser, PII policy, conformance
and contract (``land``), the feature table's definitions (``features``, see
``online_features``), the scorer with its signature check, canary routing and audit fields
(``score``), and the micro-batch path's per-day parts and decision log (``persist``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.batch_steps import prepare_batch
from aios_dagster.lib.connectors.connector_report import ConnectorReport
from aios_dagster.lib.connectors.mailbox import parse_message
from aios_dagster.lib.connectors.mailbox_source import emails_table
from aios_dagster.lib.connectors.pii_policy import TokenCache
from aios_dagster.lib.connectors.source import SourceBatch
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.contracts.runner import Contract
from aios_dagster.lib.inference.batch import Scored, score
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.microbatch import unscored
from aios_dagster.lib.inference.new_decisions import Written, write_new_decisions
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.realtime.events import Event
from aios_dagster.lib.realtime.online_features import Windows, email_features
from aios_dagster.lib.realtime.online_store import KeyValueStore
from aios_dagster.lib.realtime.sinks import Sinks
from aios_dagster.lib.realtime.state import RepeatSenderConfig, raised_label
from aios_dagster.lib.realtime.state import remember as remember_emails
from aios_dagster.lib.serving.triton import TritonResource

REALTIME_TAG = "rt"  # predictions parts written by a handler: date=...__rt=<hash>


TICKET_SCHEMA = pa.schema(
    [
        ("email_id", pa.string()),
        ("ticket_id", pa.string()),
        ("thread_id", pa.string()),
        ("sender_emails_in_window", pa.int64()),
        ("escalated_from", pa.string()),
        ("handler", pa.string()),
    ]
)


@dataclass
class HandlerContext:
    """What the steps of one handler share for its whole life."""

    name: str
    model: ModelSpec
    connector: ConnectorSpec
    contract: Contract
    lake: LakeResource
    tokens: TokenCache
    store: KeyValueStore
    windows: Windows
    triton: TritonResource
    run_id: str  # the handler's id in the decision rows: "realtime:<name>"
    repeat_sender: RepeatSenderConfig | None = None
    sinks: Sinks | None = None

    @property
    def predictions(self) -> str:
        return f"{self.model.name}_predictions"


@dataclass
class Work:
    """One pass of the pipeline over a batch of events."""

    events: list[Event]
    replay: bool = False  # some events may have been decided before (first pass, a retry)
    parsed: pa.Table | None = None
    landed: pa.Table | None = None
    features: pa.Table | None = None
    decisions: pa.Table | None = None
    scored: Scored | None = None
    written: Written | None = None
    tickets: pa.Table | None = None
    report: ConnectorReport | None = None
    already_decided: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


def batch_id(events: list[Event]) -> str:
    """Deterministic for the same events: a replay of the same batch rewrites its raw part."""
    digest = hashlib.sha1(
        "\n".join(e.ref for e in events).encode(), usedforsecurity=False
    ).hexdigest()[:16]
    return f"rt-{digest}"


def parse(ctx: HandlerContext, work: Work) -> None:
    """Each message as the mailbox connector parses a file; what is not an email is still a
    row, with ``parse_error`` set, which the contract sends to quarantine with that reason."""
    rows = [
        parse_message(e.value, e.name, delivered_at=e.published_at).__dict__ for e in work.events
    ]
    work.parsed = emails_table(rows)


def land(ctx: HandlerContext, work: Work) -> None:
    """PII policy, conformance and contract of the connector, then the raw and quarantine parts:
    the email is in ``raw_<dataset>`` (and the batch path sees it) before it is decided."""
    assert work.parsed is not None
    now = datetime.now(UTC)
    report = ConnectorReport(connector=ctx.connector.name, source=work.events[0].source)
    batch = SourceBatch(
        table=work.parsed,
        batch_id=batch_id(work.events),
        source=work.events[0].source,
        cursor={},
        row_refs=[e.ref for e in work.events],
    )
    split = prepare_batch(
        ctx.connector,
        batch,
        ctx.contract,
        lake=ctx.lake,
        pii=ctx.tokens,
        ingested_at=now,
        report=report,
    )
    split.write(ctx.lake)
    work.report = report
    work.landed = split.landed if split.landed is not None else work.parsed.slice(0, 0)


def features(ctx: HandlerContext, work: Work) -> None:
    assert work.landed is not None
    if not work.landed.num_rows:
        work.features = None
        return
    work.features = email_features(ctx.model, work.landed, ctx.store, ctx.windows)


def decide(ctx: HandlerContext, work: Work) -> None:
    """Score on Triton; on a replay, emails that already have a current decision keep it."""
    if work.features is None or not work.features.num_rows:
        return
    table = work.features
    if work.replay:
        first = pc.min(table.column(ctx.model.time_column)).as_py()
        since = (first.astimezone(UTC) - timedelta(days=1)).date()
        table = unscored(table, ctx.model.id_column, ctx.lake, ctx.predictions, since)
        work.already_decided = work.features.num_rows - table.num_rows
        if not table.num_rows:
            return
    work.decisions, work.scored = score(ctx.model, table, ctx.triton, ctx.run_id)
    work.features = table


def remember(ctx: HandlerContext, work: Work) -> None:
    """Tickets per thread and repeat senders (``state``): a sender's third email within the
    window is raised one level on its head, and its policy says so."""
    if work.decisions is None or work.landed is None:
        return
    config = ctx.repeat_sender
    head = config.head if config else None
    ids = work.decisions.column("record_id").to_pylist()
    labels = dict(zip(ids, work.decisions.column(head).to_pylist(), strict=True)) if head else {}
    decided = pc.is_in(work.landed.column("email_id"), pa.array(ids))
    outcomes = remember_emails(ctx.store, ctx.name, work.landed.filter(decided), config, labels)
    if config is not None and any(o.escalated_from for o in outcomes.values()):
        raised = [
            raised_label(config, labels[i]) if outcomes[i].escalated_from else labels[i]
            for i in ids
        ]
        policy = [
            f"{p}+repeat_sender" if outcomes[i].escalated_from else p
            for i, p in zip(ids, work.decisions.column("policy").to_pylist(), strict=True)
        ]
        table = work.decisions
        table = table.set_column(
            table.schema.get_field_index(config.head), config.head, pa.array(raised, pa.string())
        )
        table = table.set_column(
            table.schema.get_field_index("policy"), "policy", pa.array(policy, pa.string())
        )
        work.decisions = table
    work.tickets = pa.table(
        {
            "email_id": ids,
            "ticket_id": [outcomes[i].ticket_id for i in ids],
            "thread_id": [outcomes[i].thread_id for i in ids],
            "sender_emails_in_window": [outcomes[i].sender_emails for i in ids],
            "escalated_from": [outcomes[i].escalated_from for i in ids],
            "handler": [ctx.name] * len(ids),
        },
        schema=TICKET_SCHEMA,
    )


def sink(ctx: HandlerContext, work: Work) -> None:
    """The decisions to the routing and review topics and, for back-office queues, to the
    RPA queue (idempotent by email id), before they are persisted and the events committed."""
    if work.decisions is None or ctx.sinks is None:
        return
    tickets = {}
    if work.tickets is not None:
        tickets = dict(
            zip(
                work.tickets.column("email_id").to_pylist(),
                work.tickets.column("ticket_id").to_pylist(),
                strict=True,
            )
        )
    ctx.sinks.deliver(work.decisions.to_pylist(), tickets)


def persist(ctx: HandlerContext, work: Work) -> None:
    """The decisions into the predictions dataset and the decision log, per email day; the
    tickets (when the handler remembers) beside them, named like the first day's part."""
    if work.decisions is None or work.scored is None or work.features is None:
        return
    work.written = write_new_decisions(
        ctx.lake,
        dataset=ctx.predictions,
        model=ctx.model.triton_model,
        version=work.scored.model_version,
        decisions=work.decisions,
        times=work.features.column(ctx.model.time_column),
        run_id=ctx.run_id,
        tag=REALTIME_TAG,
    )
    if work.tickets is not None and work.written.parts:
        part = work.written.parts[0].rsplit("__", 1)[1]  # rt=<hash of the first day's ids>
        ctx.lake.write(
            f"{ctx.model.name}_tickets", work.tickets, part=f"{part}-{batch_id(work.events)}"
        )


def warm_up(ctx: HandlerContext) -> None:
    """Load what the first email would otherwise wait for, before consuming any: Great
    Expectations (imported lazily by the contract), the text hasher, Triton's connection and
    the model's config (its signature is checked here, so a wrong model fails at start)."""
    import great_expectations  # noqa: F401  (seconds of import, paid once, up front)
    import pandas as pd

    from aios_dagster.lib.features.text import TEXT_DIM, hash_text
    from aios_dagster.lib.inference.batch import check_signature

    parse_message(b"From: warm@up.test\r\nSubject: warm up\r\n\r\nwarm up", "warm-up.eml")
    hash_text(pd.Series(["warm up"], dtype=object))
    ctx.triton.wait_until_ready(timeout_s=ctx.triton.ready_timeout_s)
    config = ctx.triton.get_model_config(ctx.model.triton_model)
    # What the online path builds: the numeric features and one hashed vector per text column.
    width = len(ctx.model.numeric_features) + TEXT_DIM * len(ctx.model.vector_features)
    check_signature(ctx.model, config, width)


STEPS: dict[str, Callable[[HandlerContext, Work], None]] = {
    "parse": parse,
    "land": land,
    "features": features,
    "score": decide,
    "remember": remember,
    "sink": sink,
    "persist": persist,
}
