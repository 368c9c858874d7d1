"""The core-banking ledger: ``bank.sqlite`` table ``transactions``.

The ledger is drawn with numpy in one vectorised pass (about 50k rows at default size), because
it is the bulk of the data and per-row Python would dominate the generation time. It serves two
other purposes besides being a source system:
- emails about disputes and fraud quote a real recent card payment of the sender (merchant,
  amount, date), so text and ledger can be joined;
- the human routing labels depend on whether the customer had a disputed transaction visible at
  the time (``Ledger.has_recent_dispute``), so priority is learnable from customer context.

``updated_at`` is when the row last changed in the core system (settlement, or a dispute being
raised) and is the connector's watermark. The fraud wave's transactions are booked up to 30 days
before the current window but only flagged as disputed inside it (their ``updated_at``), which is
why the reference window's labels, computed from what was visible then, do not see them.
"""

from __future__ import annotations

import bisect
import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aios_dagster.lib.generator import vocab
from aios_dagster.lib.generator.customers import Customer

DAY_S = 86_400
CHANNELS: tuple[str, ...] = ("card", "online", "transfer", "atm", "direct_debit")
_CHANNEL_P = np.array([0.50, 0.15, 0.12, 0.08, 0.15])
_HOUR_W = np.array(
    [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 15, 16, 18, 17, 15, 15, 16, 18, 17, 14, 11, 8, 5, 2],
    dtype=float,
)
_HOUR_P = _HOUR_W / _HOUR_W.sum()
_ATM_AMOUNTS = np.array([10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 250, 300], dtype=float)

TXN_COLUMNS: tuple[str, ...] = (
    "txn_id",
    "customer_id",
    "account_number",
    "booked_at",
    "amount",
    "currency",
    "merchant",
    "channel",
    "is_disputed",
    "updated_at",
)
# One row, in TXN_COLUMNS order; amount is None only for the deliberately bad row.
TxnRow = tuple[str, str, str, str, float | None, str, str, str, int, str]

_DDL = """
CREATE TABLE transactions (
    txn_id TEXT PRIMARY KEY,
    customer_id TEXT,
    account_number TEXT,
    booked_at TEXT,
    amount REAL,
    currency TEXT,
    merchant TEXT,
    channel TEXT,
    is_disputed INTEGER,
    updated_at TEXT
)
"""


@dataclass(frozen=True, slots=True)
class TxnRef:
    """A payment an email can quote."""

    booked_ts: int
    amount: float
    currency: str
    merchant: str


@dataclass(frozen=True)
class Ledger:
    """Per-customer index over the ledger, read while writing emails and labels.

    ``spend`` holds each customer's card and online debits sorted by time (timestamps and the
    matching refs); ``disputes`` holds (booked, flagged) timestamps of disputed rows.
    """

    spend: dict[str, tuple[list[int], list[TxnRef]]]
    disputes: dict[str, list[tuple[int, int]]]

    def recent_spend(
        self, customer_id: str, before_ts: int, rng: random.Random, within_days: int = 30
    ) -> TxnRef | None:
        """A random card/online payment of the customer in the ``within_days`` before a time."""
        entry = self.spend.get(customer_id)
        if entry is None:
            return None
        stamps, refs = entry
        lo = bisect.bisect_left(stamps, before_ts - within_days * DAY_S)
        hi = bisect.bisect_left(stamps, before_ts)
        if hi <= lo:
            return None
        return refs[rng.randrange(lo, hi)]

    def has_recent_dispute(self, customer_id: str, at_ts: int, within_days: int = 30) -> bool:
        """Whether a dispute booked in the last ``within_days`` was already flagged at ``at_ts``."""
        return any(
            at_ts - within_days * DAY_S <= booked < at_ts and flagged <= at_ts
            for booked, flagged in self.disputes.get(customer_id, ())
        )


def _iso(stamps: np.ndarray) -> list[str]:
    text = np.datetime_as_string(stamps.astype("datetime64[s]"), unit="s")
    return [f"{value}+00:00" for value in text.tolist()]


def iso_utc(ts: int) -> str:
    """One epoch timestamp as the ledger writes it: ``2026-11-10T13:45:00+00:00``."""
    return _iso(np.array([ts]))[0]


def generate_baseline(
    rng: np.random.Generator, customers: Sequence[Customer], span_start_ts: int, span_end_ts: int
) -> list[TxnRow]:
    """Everyday banking for every customer over [span_start, span_end), sorted by booking time.

    About 20 rows per customer on average (gamma-Poisson, so some customers are much busier).
    Ids are ``TX-00000001``... in booking order.
    """
    n_customers = len(customers)
    counts = rng.poisson(rng.gamma(4.0, 5.0, n_customers))
    owner = np.repeat(np.arange(n_customers), counts)
    n = int(owner.size)
    n_days = max((span_end_ts - span_start_ts) // DAY_S, 1)
    booked = (
        span_start_ts
        + rng.integers(0, n_days, n) * DAY_S
        + rng.choice(24, size=n, p=_HOUR_P) * 3600
        + rng.integers(0, 3600, n)
    )
    channel = rng.choice(len(CHANNELS), size=n, p=_CHANNEL_P)
    is_credit = (channel == 2) & (rng.random(n) < 0.3)
    amount = np.select(
        [channel == 0, channel == 1, is_credit, channel == 2, channel == 3],
        [
            -np.clip(rng.lognormal(2.8, 0.9, n), 1.0, 900.0),
            -np.clip(rng.lognormal(3.4, 0.9, n), 2.0, 1500.0),
            np.clip(rng.lognormal(7.3, 0.4, n), 50.0, 9000.0),
            -np.clip(rng.lognormal(4.3, 1.0, n), 5.0, 5000.0),
            -rng.choice(_ATM_AMOUNTS, size=n),
        ],
        -np.clip(rng.lognormal(3.7, 0.6, n), 5.0, 800.0),
    ).round(2)
    spendable = channel <= 1
    foreign = spendable & (rng.random(n) < 0.06)
    euro = rng.random(n) < 0.65
    disputed = spendable & (rng.random(n) < 0.012)
    delay = np.where(disputed, rng.integers(DAY_S, 10 * DAY_S, n), rng.integers(300, 2 * DAY_S, n))
    updated = np.minimum(booked + delay, span_end_ts - 1)
    pick = rng.integers(0, 1 << 30, n)

    order = np.argsort(booked, kind="stable")
    booked_iso = _iso(booked[order])
    updated_iso = _iso(updated[order])
    rows: list[TxnRow] = []
    for number, i in enumerate(order.tolist(), start=1):
        customer = customers[owner[i]]
        ch = int(channel[i])
        if foreign[i]:
            merchant = vocab.FOREIGN_MERCHANTS[pick[i] % len(vocab.FOREIGN_MERCHANTS)]
            currency = "EUR" if euro[i] else "USD"
        else:
            merchant = _domestic_merchant(ch, bool(is_credit[i]), int(pick[i]), customer.city)
            currency = "GBP"
        rows.append(
            (
                f"TX-{number:08d}",
                customer.customer_id,
                customer.account_number,
                booked_iso[number - 1],
                float(amount[i]),
                currency,
                merchant,
                CHANNELS[ch],
                int(disputed[i]),
                updated_iso[number - 1],
            )
        )
    return rows


def _domestic_merchant(channel: int, is_credit: bool, pick: int, city: str) -> str:
    if channel == 0:
        return vocab.CARD_MERCHANTS[pick % len(vocab.CARD_MERCHANTS)]
    if channel == 1:
        return vocab.ONLINE_MERCHANTS[pick % len(vocab.ONLINE_MERCHANTS)]
    if channel == 2:
        names = vocab.TRANSFER_IN_NAMES if is_credit else vocab.TRANSFER_OUT_NAMES
        return names[pick % len(names)]
    if channel == 3:
        return f"ATM {city}"
    return vocab.DIRECT_DEBIT_MERCHANTS[pick % len(vocab.DIRECT_DEBIT_MERCHANTS)]


def generate_fraud_bursts(
    rng: np.random.Generator,
    customers: Sequence[Customer],
    window_start_ts: int,
    window_end_ts: int,
    flagged_from_ts: int,
    first_number: int,
) -> list[TxnRow]:
    """The fraud wave: for each affected customer a burst of 3-8 large foreign card payments.

    Booked around one random day in [window_start, window_end), all disputed, flagged (their
    ``updated_at``) no earlier than ``flagged_from_ts`` (the start of the current window).
    """
    drift_p = np.array(
        [0.4] + [0.6 / (len(vocab.DRIFT_MERCHANTS) - 1)] * (len(vocab.DRIFT_MERCHANTS) - 1)
    )
    staged: list[tuple[int, int, Customer, float, str, str]] = []
    for customer in customers:
        size = int(rng.integers(3, 9))
        centre = int(rng.integers(window_start_ts, window_end_ts))
        offsets = rng.integers(-2 * DAY_S, 2 * DAY_S, size)
        booked = np.clip(centre + offsets, window_start_ts, window_end_ts - 1)
        amounts = -rng.uniform(400.0, 3000.0, size).round(2)
        currencies = np.where(rng.random(size) < 0.6, "EUR", "USD")
        merchants = rng.choice(len(vocab.DRIFT_MERCHANTS), size=size, p=drift_p)
        flag_delay = rng.integers(600, 2 * DAY_S, size)
        for j in range(size):
            b = int(booked[j])
            flagged = min(max(b, flagged_from_ts) + int(flag_delay[j]), window_end_ts - 1)
            staged.append(
                (
                    b,
                    flagged,
                    customer,
                    float(amounts[j]),
                    str(currencies[j]),
                    vocab.DRIFT_MERCHANTS[int(merchants[j])],
                )
            )
    staged.sort(key=lambda item: (item[0], item[2].customer_id))
    return [
        (
            f"TX-{number:08d}",
            customer.customer_id,
            customer.account_number,
            iso_utc(booked),
            amount,
            currency,
            merchant,
            "card",
            1,
            iso_utc(flagged),
        )
        for number, (booked, flagged, customer, amount, currency, merchant) in enumerate(
            staged, start=first_number
        )
    ]


def make_bad_transaction(
    rng: random.Random, customers: Sequence[Customer], number: int, start_ts: int, end_ts: int
) -> TxnRow:
    """A card payment in [start, end) whose amount is NULL (a contract must catch it)."""
    customer = rng.choice(customers)
    booked = rng.randrange(start_ts, end_ts - 3600)
    return (
        f"TX-{number:08d}",
        customer.customer_id,
        customer.account_number,
        iso_utc(booked),
        None,
        "GBP",
        rng.choice(vocab.CARD_MERCHANTS),
        "card",
        0,
        iso_utc(booked + 1800),
    )


def build_ledger(rows: Sequence[TxnRow]) -> Ledger:
    """Index rows per customer; ``rows`` must be sorted by booking time."""
    spend: dict[str, tuple[list[int], list[TxnRef]]] = {}
    disputes: dict[str, list[tuple[int, int]]] = {}
    stamps = _epoch([row[3] for row in rows])
    flagged = _epoch([row[9] for row in rows])
    for row, booked, updated in zip(rows, stamps, flagged, strict=True):
        customer_id, amount, channel = row[1], row[4], row[7]
        if amount is None:
            continue
        if channel in ("card", "online") and amount < 0:
            entry = spend.setdefault(customer_id, ([], []))
            entry[0].append(booked)
            entry[1].append(TxnRef(booked, amount, row[5], row[6]))
        if row[8]:
            disputes.setdefault(customer_id, []).append((booked, updated))
    return Ledger(spend=spend, disputes=disputes)


def _epoch(iso_values: list[str]) -> list[int]:
    if not iso_values:
        return []
    naive = np.array([value[:19] for value in iso_values], dtype="datetime64[s]")
    return naive.astype(np.int64).tolist()


def write_sqlite(path: Path, rows: Sequence[TxnRow]) -> None:
    """Write the table in one transaction, index ``updated_at`` (the connector's watermark)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = MEMORY")
        connection.execute("PRAGMA synchronous = OFF")
        with connection:
            connection.execute(_DDL)
            connection.executemany(
                "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            connection.execute(
                "CREATE INDEX idx_transactions_updated_at ON transactions(updated_at)"
            )
    finally:
        connection.close()
