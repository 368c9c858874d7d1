"""Incremental feature models: a run does the work of what landed, and agrees with a full build.

One generated bank (two weeks of mail) lands and is built in full; then, in order, a new day of
mail and transactions, a transaction that arrives late for an earlier day, and a CRM export that
changes one customer land, each followed by an incremental ``dbt build`` and a
``dbt build --full-refresh`` to compare with. Rows a run wrote are told apart by their stamp
(``_built_at`` / ``_staged_at`` at or after the run's start), not by timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from aios_dagster.lib.generator import (
    GenerationManifest,
    deliver_new_emails,
    generate_reference_data,
)
from aios_dagster.settings import Settings
from tests.dbt.lake_history import LakeHistory, without_lineage

pytestmark = pytest.mark.slow

SMALL = {"emails_per_week": 80, "customers": 20, "weeks": 2, "seed": 11, "bad_records": False}
NEW_MAIL = 12
LATE_AMOUNT = 77.70


@dataclass
class Step:
    """The warehouse before a change landed, after the incremental run, and after a full one."""

    before: pd.DataFrame
    incremental: pd.DataFrame
    full: pd.DataFrame
    started: datetime  # the incremental run started at or after this
    staged: dict[str, pd.DataFrame]  # staging tables after the incremental run

    def rebuilt(self) -> set[str]:
        return set(self.incremental.loc[self.incremental._built_at >= self.started, "email_id"])

    def staged_ids(self, table: str) -> set[str]:
        frame = self.staged[table]
        return set(frame.loc[frame._staged_at >= self.started, frame.columns[0]])


@dataclass
class Bank:
    history: LakeHistory
    generated: GenerationManifest


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    root = tmp_path_factory.mktemp("dbt_incremental")
    settings = Settings.from_env({"AIOS_DATA_DIR": str(root / "data")})
    generated = generate_reference_data(
        settings.sources_dir, start_date=settings.start_date, **SMALL
    )
    with dg.instance_for_test() as instance:
        history = LakeHistory(settings, instance, root / "dbt_target")
        history.land()
        history.build()
        yield Bank(history, generated)


def _step(history: LakeHistory) -> Step:
    """Land what the sources hold now, build incrementally, then in full; record all three."""
    before = history.table("email_features")
    history.land()
    started = datetime.now(UTC)
    history.build()
    incremental = history.table("email_features")
    staged = {t: history.table(t) for t in ("stg_emails", "stg_transactions", "stg_customers")}
    history.build("--full-refresh")
    return Step(before, incremental, history.table("email_features"), started, staged)


def _ledger_row(txn_id: str, customer_id: str, booked: datetime, amount: float, updated: datetime):
    currency = "EUR" if amount < 0 else "GBP"
    return (txn_id, customer_id, "12345678", booked.isoformat(), amount, currency, "Shop", "card",
            0, updated.isoformat())  # fmt: skip


@dataclass
class NewDay:
    step: Step
    emails: set[str]
    transactions: set[str]


@pytest.fixture(scope="module")
def new_day(bank: Bank) -> NewDay:
    day = bank.generated.current_end + timedelta(days=1)
    paths = deliver_new_emails(bank.history.settings.sources_dir, count=NEW_MAIL, seed=3, day=day)
    known = bank.history.table("stg_customers").customer_id.tolist()[:8]
    early = datetime(day.year, day.month, day.day, 0, 10, tzinfo=UTC)
    rows = [
        _ledger_row(f"TX-NEW-{i}", customer, early, -12.5 * (i + 1), early)
        for i, customer in enumerate(known)
    ]
    bank.history.add_transactions(rows)
    return NewDay(_step(bank.history), {p.stem for p in paths}, {r[0] for r in rows})


def test_new_day_incremental_equals_full_refresh(new_day: NewDay) -> None:
    step = new_day.step
    assert len(step.incremental) == len(step.before) + NEW_MAIL
    pd.testing.assert_frame_equal(without_lineage(step.incremental), without_lineage(step.full))


def test_new_day_writes_only_the_new_rows(new_day: NewDay) -> None:
    step = new_day.step
    assert step.rebuilt() == new_day.emails
    # Every other feature row is the very row the first build wrote, stamp included.
    kept = step.incremental[~step.incremental.email_id.isin(new_day.emails)]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), step.before)
    # Staging merged the new records only (everything landed today is re-read, not re-written).
    assert step.staged_ids("stg_emails") == new_day.emails
    assert step.staged_ids("stg_transactions") == new_day.transactions
    assert step.staged_ids("stg_customers") == set()


@dataclass
class Late:
    step: Step
    booked: datetime
    customer_id: str


@pytest.fixture(scope="module")
def late_transaction(bank: Bank, new_day: NewDay) -> Late:
    """A debit booked in the middle of a customer's mail history lands after the new day."""
    features = new_day.step.full
    known = features[features.is_known_customer]
    customer_id = known.customer_id.value_counts().index[0]
    mail = known[known.customer_id == customer_id].sort_values("received_at")
    assert len(mail) >= 3, "the generated bank needs a customer with three emails"
    booked = mail.received_at.iloc[1].to_pydatetime() - timedelta(minutes=1)
    # Updated after everything the connector has read: its cursor is the ledger's updated_at.
    updated = datetime(2030, 1, 1, tzinfo=UTC)
    row = _ledger_row("TX-LATE-1", customer_id, booked, -LATE_AMOUNT, updated)
    bank.history.add_transactions([row])
    return Late(_step(bank.history), booked, customer_id)


def test_late_transaction_changes_the_days_it_reaches(late_transaction: Late) -> None:
    step, booked = late_transaction.step, late_transaction.booked
    reached = step.before[
        (step.before.customer_id == late_transaction.customer_id)
        & (step.before.received_at > booked)
        & (step.before.received_at <= booked + timedelta(days=90))
    ]
    assert len(reached) >= 2
    # Exactly the customer's emails after the booking are recomputed, however old they are.
    assert step.rebuilt() == set(reached.email_id)
    after = step.incremental.set_index("email_id").loc[reached.email_id]
    before = reached.set_index("email_id")
    within_30d = before.received_at <= booked + timedelta(days=30)
    assert (after.txn_count_30d - before.txn_count_30d)[within_30d].eq(1).all()
    assert (after.foreign_txn_30d - before.foreign_txn_30d)[within_30d].eq(1).all()
    spend_delta = (after.spend_30d - before.spend_30d)[within_30d]
    assert spend_delta.round(2).eq(LATE_AMOUNT).all()
    # Emails before the booking keep their features and their stamp.
    untouched = step.incremental[~step.incremental.email_id.isin(reached.email_id)]
    pd.testing.assert_frame_equal(untouched.reset_index(drop=True), step.before[
        ~step.before.email_id.isin(reached.email_id)].reset_index(drop=True))  # fmt: skip
    pd.testing.assert_frame_equal(without_lineage(step.incremental), without_lineage(step.full))


@dataclass
class CrmExport:
    step: Step
    customer_id: str


@pytest.fixture(scope="module")
def crm_export(bank: Bank, late_transaction: Late) -> CrmExport:
    """A second CRM export: every customer lands again, one of them in another segment."""
    features = late_transaction.step.full
    known = features[features.is_known_customer & (features.segment != "business")]
    customer_id = known.customer_id.value_counts().index[0]
    bank.history.export_crm("customers_2.csv", segment_of={customer_id: "business"})
    return CrmExport(_step(bank.history), customer_id)


def test_crm_export_recomputes_only_the_changed_customer(crm_export: CrmExport) -> None:
    step = crm_export.step
    theirs = set(step.before.loc[step.before.customer_id == crm_export.customer_id, "email_id"])
    assert theirs and step.rebuilt() == theirs
    assert set(step.incremental.loc[step.incremental.email_id.isin(theirs), "segment"]) == {
        "business"
    }
    # Every customer landed again, but only one changed: only that one has a new change stamp.
    customers = step.staged["stg_customers"]
    assert step.staged_ids("stg_customers") == set(customers.customer_id)
    assert set(customers.loc[customers._changed_at >= step.started, "customer_id"]) == {
        crm_export.customer_id
    }
    pd.testing.assert_frame_equal(without_lineage(step.incremental), without_lineage(step.full))


def test_a_negative_landing_lookback_is_refused(bank: Bank) -> None:
    outcome = bank.history.dbt_build(vars_={"landing_lookback_days": -1})
    assert not outcome.success
    errors = [r.message for r in outcome.result.results if r.status == "error"]
    assert errors and all("landing_lookback_days must be a whole number" in e for e in errors)
