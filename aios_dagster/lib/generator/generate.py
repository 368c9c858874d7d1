"""Public entry points: generate the bank's source systems, and deliver new mail later.

Layout under ``out_dir``::

    mailbox/inbox/<email_id>.eml   support mail, one RFC 5322 message per file
    crm/customers.csv              CRM export
    bank.sqlite                    core-banking ledger, table ``transactions``
    labels/routing_labels.csv      human routing of the history (reference) window
    labels/pending/...             the current window's routing, delivered later (deliver_labels)
    manifest.json                  what was generated, with the arguments

The last week is the *current* window (mail to be routed, no labels); the weeks before it are the
labelled *reference* window. Every part of the world draws from its own named random stream
(``seeding``), so the same arguments give byte-identical files and switching the fraud wave on
(``drift=True``) leaves the reference window untouched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aios_dagster.lib.generator import customers as crm
from aios_dagster.lib.generator import labels as labelling
from aios_dagster.lib.generator import transactions as ledger_mod
from aios_dagster.lib.generator.emails import (
    MailWorld,
    Threads,
    plan_week,
    write_week,
)
from aios_dagster.lib.generator.seeding import np_rng, py_rng
from aios_dagster.lib.generator.vocab import PRIORITIES, QUEUES, SEGMENTS

__all__ = [
    "PRIORITIES",
    "QUEUES",
    "GenerationManifest",
    "deliver_new_emails",
    "generate_reference_data",
]

LEDGER_HISTORY_DAYS = 60
FRAUD_WAVE_LEAD_DAYS = 30
STRANGER_POOL = 150


@dataclass(frozen=True)
class GenerationManifest:
    """What :func:`generate_reference_data` wrote: counts, windows and the planted bad records.

    Windows are inclusive date ranges. An empty reference window (``weeks=1``) is written as
    ``reference_end == reference_start - 1 day``.
    """

    seed: int
    emails: int
    customers: int
    transactions: int
    labels: int
    reference_start: date
    reference_end: date
    current_start: date
    current_end: date
    drift: bool
    bad_records: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; dates as ISO strings."""
        return {
            "seed": self.seed,
            "emails": self.emails,
            "customers": self.customers,
            "transactions": self.transactions,
            "labels": self.labels,
            "reference_start": self.reference_start.isoformat(),
            "reference_end": self.reference_end.isoformat(),
            "current_start": self.current_start.isoformat(),
            "current_end": self.current_end.isoformat(),
            "drift": self.drift,
            "bad_records": {name: list(ids) for name, ids in self.bad_records.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationManifest:
        """Inverse of :meth:`to_dict` (extra keys such as ``arguments`` are ignored)."""
        return cls(
            seed=int(data["seed"]),
            emails=int(data["emails"]),
            customers=int(data["customers"]),
            transactions=int(data["transactions"]),
            labels=int(data["labels"]),
            reference_start=date.fromisoformat(data["reference_start"]),
            reference_end=date.fromisoformat(data["reference_end"]),
            current_start=date.fromisoformat(data["current_start"]),
            current_end=date.fromisoformat(data["current_end"]),
            drift=bool(data["drift"]),
            bad_records={k: list(v) for k, v in data.get("bad_records", {}).items()},
        )


def _midnight_ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _clear(out_dir: Path) -> None:
    """Remove what a previous run wrote (and only that)."""
    for folder in ("mailbox", "crm", "labels"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    for name in ("bank.sqlite", "manifest.json"):
        (out_dir / name).unlink(missing_ok=True)


def _world(
    seed: int, senders: list[crm.Customer], ledger: ledger_mod.Ledger | None, weighted: bool
) -> MailWorld:
    """Who writes in and how often: a gamma-distributed activity per customer (some customers
    write every week, most rarely), or uniform when delivering ad-hoc mail."""
    activity = py_rng(seed, "activity")
    weights = [activity.gammavariate(1.5, 1.0) if weighted else 1.0 for _ in senders]
    cum: list[float] = []
    total = 0.0
    for weight in weights:
        total += weight
        cum.append(total)
    return MailWorld(
        senders=[crm.Sender(c.full_name, c.email, c) for c in senders],
        cum_weights=cum,
        strangers=crm.make_unknown_senders(py_rng(seed, "strangers"), STRANGER_POOL),
        ledger=ledger,
    )


def generate_reference_data(
    out_dir: Path,
    *,
    seed: int = 7,
    emails_per_week: int = 10_000,
    weeks: int = 2,
    customers: int = 2_500,
    start_date: date = date(2026, 11, 9),
    drift: bool = False,
    bad_records: bool = True,
) -> GenerationManifest:
    """Write the source systems under ``out_dir`` and ``out_dir/manifest.json``.

    Overwrites previous output in ``out_dir`` (deletes the mailbox, crm, labels and bank.sqlite
    it owns first). The last of ``weeks`` is the current window, the others the labelled
    reference window; ``weeks=1`` (a mailbox with no history) leaves the reference window empty
    and the labels file with only its header. With ``drift`` the current week carries a card-fraud
    wave; with ``bad_records`` one deliberately broken record is planted per dataset and listed
    in the manifest.
    """
    if weeks < 1:
        raise ValueError("weeks must be >= 1 (the last week is the current window)")
    if emails_per_week < 1 or customers < 1:
        raise ValueError("emails_per_week and customers must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)

    current_start = start_date + timedelta(days=7 * (weeks - 1))
    current_end = current_start + timedelta(days=6)
    span_start_ts = _midnight_ts(start_date - timedelta(days=LEDGER_HISTORY_DAYS))
    span_end_ts = _midnight_ts(current_end + timedelta(days=1))
    current_start_ts = _midnight_ts(current_start)
    bad_rng = py_rng(seed, "bad-records")
    planted: dict[str, list[str]] = {"emails": [], "customers": [], "transactions": []}

    clean = crm.make_customers(py_rng(seed, "customers"), customers, start_date)
    crm_rows = list(clean)
    if bad_records:
        bad_customer = crm.make_bad_customer(bad_rng, clean, start_date)
        crm_rows.append(bad_customer)
        planted["customers"].append(bad_customer.customer_id)
    crm.write_customers_csv(out_dir / "crm" / "customers.csv", crm_rows)

    baseline = ledger_mod.generate_baseline(
        np_rng(seed, "ledger"), clean, span_start_ts, span_end_ts
    )
    ledger = ledger_mod.build_ledger(baseline)
    world = _world(seed, clean, ledger, weighted=True)
    inbox = out_dir / "mailbox" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)

    threads = Threads()
    reference_records = []
    current_records = []
    wave_rows: list[ledger_mod.TxnRow] = []
    number = 1
    for week in range(weeks):
        is_current = week == weeks - 1
        rng = py_rng(seed, "mail-week", week)
        first_day = start_date + timedelta(days=7 * week)
        plan = plan_week(
            rng,
            days=[first_day + timedelta(days=d) for d in range(7)],
            ids=[f"EM-{n:07d}" for n in range(number, number + emails_per_week)],
            world=world,
            threads=threads,
            fraud_wave=drift and is_current,
        )
        wave_ledger = None
        if plan.affected:
            wave_rows = ledger_mod.generate_fraud_bursts(
                np_rng(seed, "fraud-wave"),
                plan.affected,
                current_start_ts - FRAUD_WAVE_LEAD_DAYS * ledger_mod.DAY_S,
                span_end_ts,
                current_start_ts,
                first_number=len(baseline) + 1,
            )
            wave_ledger = ledger_mod.build_ledger(wave_rows)
        without_from: frozenset[str] = frozenset()
        if bad_records and is_current:
            bad_email = bad_rng.choice(plan.slots).email_id
            without_from = frozenset({bad_email})
            planted["emails"].append(bad_email)
        records = write_week(
            inbox, rng, plan, world, threads, wave_ledger=wave_ledger, without_from=without_from
        )
        if not is_current:
            reference_records.extend(records)
        else:
            current_records = records
        number += len(plan.slots)

    label_rows = labelling.make_labels(py_rng(seed, "labels"), reference_records, ledger)
    labelling.write_labels_csv(out_dir / "labels" / "routing_labels.csv", label_rows)
    # The current week's labels exist only in the ticketing system until agents decide: they
    # are delivered later (``deliver_labels``), from their own stream so history is unchanged.
    labelling.write_labels_csv(
        out_dir / labelling.PENDING_LABELS,
        labelling.make_labels(py_rng(seed, "labels-current"), current_records, ledger),
    )

    txn_rows = baseline + wave_rows
    if bad_records:
        bad_txn = ledger_mod.make_bad_transaction(
            bad_rng, clean, len(txn_rows) + 1, current_start_ts, span_end_ts
        )
        txn_rows.append(bad_txn)
        planted["transactions"].append(bad_txn[0])
    ledger_mod.write_sqlite(out_dir / "bank.sqlite", txn_rows)

    manifest = GenerationManifest(
        seed=seed,
        emails=number - 1,
        customers=len(crm_rows),
        transactions=len(txn_rows),
        labels=len(label_rows),
        reference_start=start_date,
        reference_end=current_start - timedelta(days=1),
        current_start=current_start,
        current_end=current_end,
        drift=drift,
        bad_records=planted,
    )
    arguments = {
        "seed": seed,
        "emails_per_week": emails_per_week,
        "weeks": weeks,
        "customers": customers,
        "start_date": start_date.isoformat(),
        "drift": drift,
        "bad_records": bad_records,
    }
    document = {**manifest.to_dict(), "arguments": arguments}
    (out_dir / "manifest.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return manifest


def deliver_new_emails(
    out_dir: Path,
    *,
    count: int,
    seed: int,
    day: date,
    drift: bool = False,
    folder: str = "inbox",
) -> list[Path]:
    """Simulate new mail arriving: write ``count`` new ``.eml`` files dated ``day``.

    Senders are drawn from the existing ``crm/customers.csv`` (valid segments only) plus ~3%
    strangers. Ids are ``EM-N<seed>-<yyyymmdd>-<nnnnn>``, numbered after any earlier delivery
    with the same seed and day, so they never collide with generated or delivered mail and the
    same call on the same mailbox writes the same bytes. Returns the new paths in time order.
    With ``drift`` the mail follows the fraud wave's mix and vocabulary; only mail is written
    (the ledger is left alone), and delivered mail is never labelled. ``folder`` is the
    mailbox folder written (``live``: the real-time handler's drop folder).
    """
    if count < 1:
        return []
    out_dir = Path(out_dir)
    inbox = out_dir / "mailbox" / folder
    inbox.mkdir(parents=True, exist_ok=True)
    prefix = f"EM-N{seed}-{day:%Y%m%d}-"
    taken = [int(p.stem.removeprefix(prefix)) for p in inbox.glob(f"{prefix}*.eml")]
    start = max(taken, default=0) + 1
    ids = [f"{prefix}{n:05d}" for n in range(start, start + count)]

    known = [
        c
        for c in crm.read_customers_csv(out_dir / "crm" / "customers.csv")
        if c.segment in SEGMENTS
    ]
    if not known:
        raise ValueError(f"no valid customers in {out_dir / 'crm' / 'customers.csv'}")
    world = _world(seed, known, None, weighted=False)
    rng = py_rng(seed, "deliver", day.isoformat(), start)
    threads = Threads()
    plan = plan_week(rng, days=[day], ids=ids, world=world, threads=threads, fraud_wave=drift)
    write_week(inbox, rng, plan, world, threads)
    return [inbox / f"{email_id}.eml" for email_id in ids]
