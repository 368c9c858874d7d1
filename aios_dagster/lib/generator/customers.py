"""The CRM: who the bank's customers are, and who else writes to the support inbox.

Customers carry the context the router needs (segment) and the identifiers the masking layer
must catch (email, phone, account number). Senders outside the CRM are generated on domains the
CRM never uses, so "unknown customer" is unambiguous downstream.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from aios_dagster.lib.generator import pii, vocab

CRM_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "full_name",
    "email",
    "phone",
    "account_number",
    "segment",
    "joined_on",
    "city",
)
EARLIEST_JOIN = date(2005, 1, 1)


@dataclass(frozen=True, slots=True)
class Customer:
    """One CRM row."""

    customer_id: str
    full_name: str
    email: str
    phone: str
    account_number: str
    segment: str
    joined_on: date
    city: str

    def as_row(self) -> tuple[str, ...]:
        return (
            self.customer_id,
            self.full_name,
            self.email,
            self.phone,
            self.account_number,
            self.segment,
            self.joined_on.isoformat(),
            self.city,
        )


@dataclass(frozen=True, slots=True)
class Sender:
    """Whoever an email comes from: a CRM customer, or a stranger (``customer is None``)."""

    name: str
    address: str
    customer: Customer | None = None

    @property
    def first_name(self) -> str:
        return self.name.split(" ", 1)[0]


def _address(rng: random.Random, first: str, last: str, domain: str) -> str:
    first_l = first.lower()
    last_l = last.lower().replace("'", "")
    local = rng.choice(
        (
            f"{first_l}.{last_l}",
            f"{first_l}{last_l}",
            f"{first_l[0]}.{last_l}",
            f"{first_l}_{last_l}",
            f"{last_l}.{first_l}",
        )
    )
    if rng.random() < 0.45:
        local += str(rng.randrange(1, 99))
    return f"{local}@{domain}"


def _unique_address(
    rng: random.Random, first: str, last: str, domains: tuple[str, ...], taken: set[str]
) -> str:
    address = _address(rng, first, last, rng.choice(domains))
    while address in taken:
        local, domain = address.split("@")
        address = f"{local}{rng.randrange(10)}@{domain}"
    taken.add(address)
    return address


def make_customers(rng: random.Random, count: int, start_date: date) -> list[Customer]:
    """``count`` clean customers with unique ids, emails and account numbers."""
    taken: set[str] = set()
    accounts = rng.sample(range(10_000_000, 100_000_000), count)
    span_days = (start_date - EARLIEST_JOIN).days
    customers: list[Customer] = []
    for index in range(count):
        first = rng.choice(vocab.FIRST_NAMES)
        last = rng.choice(vocab.LAST_NAMES)
        customers.append(
            Customer(
                customer_id=f"C-{index + 1:06d}",
                full_name=f"{first} {last}",
                email=_unique_address(rng, first, last, vocab.CRM_DOMAINS, taken),
                phone=pii.random_mobile(rng),
                account_number=str(accounts[index]),
                segment=rng.choices(vocab.SEGMENTS, weights=vocab.SEGMENT_WEIGHTS)[0],
                joined_on=EARLIEST_JOIN + timedelta(days=rng.randrange(max(span_days, 1))),
                city=rng.choice(vocab.CITIES),
            )
        )
    return customers


def make_bad_customer(rng: random.Random, customers: list[Customer], start_date: date) -> Customer:
    """An extra CRM row whose segment is outside the allowed set (a contract must catch it)."""
    taken_emails = {c.email for c in customers}
    taken_accounts = {c.account_number for c in customers}
    account = str(rng.randrange(10_000_000, 100_000_000))
    while account in taken_accounts:
        account = str(rng.randrange(10_000_000, 100_000_000))
    first = rng.choice(vocab.FIRST_NAMES)
    last = rng.choice(vocab.LAST_NAMES)
    return Customer(
        customer_id=f"C-{len(customers) + 1:06d}",
        full_name=f"{first} {last}",
        email=_unique_address(rng, first, last, vocab.CRM_DOMAINS, taken_emails),
        phone=pii.random_mobile(rng),
        account_number=account,
        segment="UNKNOWN",
        joined_on=start_date - timedelta(days=rng.randrange(1, 365)),
        city=rng.choice(vocab.CITIES),
    )


def make_unknown_senders(rng: random.Random, count: int) -> list[Sender]:
    """People who write in but are not in the CRM (prospects, typos in addresses, new emails)."""
    taken: set[str] = set()
    senders: list[Sender] = []
    for _ in range(count):
        first = rng.choice(vocab.FIRST_NAMES)
        last = rng.choice(vocab.LAST_NAMES)
        address = _unique_address(rng, first, last, vocab.UNKNOWN_DOMAINS, taken)
        senders.append(Sender(name=f"{first} {last}", address=address))
    return senders


def write_customers_csv(path: Path, customers: list[Customer]) -> None:
    """Write the CRM export; ``\\n`` line endings so the bytes do not depend on the platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CRM_COLUMNS)
        writer.writerows(customer.as_row() for customer in customers)


def read_customers_csv(path: Path) -> list[Customer]:
    """Read a CRM export written by :func:`write_customers_csv`."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Customer(
                customer_id=row["customer_id"],
                full_name=row["full_name"],
                email=row["email"],
                phone=row["phone"],
                account_number=row["account_number"],
                segment=row["segment"],
                joined_on=date.fromisoformat(row["joined_on"]),
                city=row["city"],
            )
            for row in csv.DictReader(handle)
        ]
