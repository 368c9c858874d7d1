"""Behaviour of the synthetic bank generator, small size: 2 weeks x 300 emails, 100 customers."""

from __future__ import annotations

import csv
import email
import json
import re
import shutil
import sqlite3
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from aios_dagster.lib.generator import (
    PRIORITIES,
    QUEUES,
    GenerationManifest,
    compose,
    deliver_new_emails,
    generate_reference_data,
    vocab,
)
from aios_dagster.lib.generator.pii import iban_for, luhn_valid

SMALL: dict[str, Any] = {"emails_per_week": 300, "customers": 100}
PHONE_RE = re.compile(r"(?:\+44\s?7\d{3}|\b07\d{3})\s?\d{6}\b")
CARD_RE = re.compile(r"\b(?:\d{4} ){3}\d{4}\b|\b\d{16}\b")
IBAN_RE = re.compile(r"\bGB\d{2}(?: ?[A-Z0-9]{4}){4}(?: ?[A-Z0-9]{2})\b")
ACCOUNT_RE = re.compile(r"\b\d{8}\b")


@dataclass(frozen=True)
class Dataset:
    root: Path
    manifest: GenerationManifest

    @property
    def inbox(self) -> Path:
        return self.root / "mailbox" / "inbox"

    def emails(self) -> dict[str, EmailMessage]:
        return {
            path.stem: email.message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in sorted(self.inbox.glob("*.eml"))
        }

    def customers(self) -> list[dict[str, str]]:
        with (self.root / "crm" / "customers.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    def labels(self) -> list[dict[str, str]]:
        with (self.root / "labels" / "routing_labels.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    def transactions(self) -> list[tuple]:
        with sqlite3.connect(self.root / "bank.sqlite") as connection:
            return connection.execute("SELECT * FROM transactions ORDER BY txn_id").fetchall()


def _generate(root: Path, **kwargs: Any) -> Dataset:
    return Dataset(root, generate_reference_data(root, **{**SMALL, **kwargs}))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _generate(tmp_path_factory.mktemp("base"), seed=11)


@pytest.fixture(scope="module")
def again(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _generate(tmp_path_factory.mktemp("again"), seed=11)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _generate(tmp_path_factory.mktemp("drift"), seed=11, drift=True)


@pytest.fixture(scope="module")
def base_emails(base: Dataset) -> dict[str, EmailMessage]:
    return base.emails()


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def _sent_on(message: EmailMessage) -> date:
    return message["Date"].datetime.date()


def _has_marker(message: EmailMessage) -> bool:
    text = (str(message["Subject"]) + _body(message)).lower()
    return any(marker in text for marker in vocab.DRIFT_MARKERS)


# -- counts and manifest ----------------------------------------------------------------------


def test_manifest_counts_match_files(base: Dataset) -> None:
    m = base.manifest
    assert m.emails == 600 == len(list(base.inbox.glob("*.eml")))
    assert m.customers == 101 == len(base.customers())
    assert m.transactions == len(base.transactions())
    assert m.labels == 300 == len(base.labels())
    assert (m.reference_start, m.reference_end) == (date(2026, 11, 9), date(2026, 11, 15))
    assert (m.current_start, m.current_end) == (date(2026, 11, 16), date(2026, 11, 22))
    document = json.loads((base.root / "manifest.json").read_text())
    assert {k: v for k, v in document.items() if k != "arguments"} == m.to_dict()
    assert document["arguments"]["emails_per_week"] == 300
    assert GenerationManifest.from_dict(document) == m
    assert QUEUES == (
        "card_fraud",
        "disputes",
        "login_access",
        "loans",
        "complaints",
        "account_servicing",
    )
    assert PRIORITIES == ("P1", "P2", "P3")


def test_transactions_volume_and_schema(base: Dataset) -> None:
    rows = base.transactions()
    assert 15 <= len(rows) / 100 <= 25  # per customer, on average
    with sqlite3.connect(base.root / "bank.sqlite") as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(transactions)")]
        indexes = connection.execute("PRAGMA index_list(transactions)").fetchall()
        indexed = {
            col[2]
            for index in indexes
            for col in connection.execute(f"PRAGMA index_info('{index[1]}')")
        }
    assert columns == [
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
    ]
    assert "updated_at" in indexed
    assert len({row[0] for row in rows}) == len(rows)
    crm = {c["customer_id"]: c["account_number"] for c in base.customers()}
    first, last = "2026-09-10T00:00:00+00:00", "2026-11-22T23:59:59+00:00"
    for (
        txn_id,
        cid,
        account,
        booked,
        amount,
        currency,
        merchant,
        channel,
        disputed,
        updated,
    ) in rows:
        assert crm[cid] == account
        assert first <= booked <= last and booked <= updated <= last
        assert currency in {"GBP", "EUR", "USD"} and merchant
        assert channel in {"card", "online", "transfer", "atm", "direct_debit"}
        assert disputed in (0, 1)
        assert amount is not None or txn_id in base.manifest.bad_records["transactions"]


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(base: Dataset, again: Dataset) -> None:
    for path in sorted(base.inbox.glob("*.eml")):
        assert path.read_bytes() == (again.inbox / path.name).read_bytes(), path.name
    for name in ("crm/customers.csv", "labels/routing_labels.csv", "manifest.json"):
        assert (base.root / name).read_bytes() == (again.root / name).read_bytes(), name
    assert base.transactions() == again.transactions()


def test_different_seed_differs(base: Dataset, tmp_path: Path) -> None:
    other = _generate(tmp_path, seed=12)
    assert other.customers() != base.customers()
    assert other.transactions() != base.transactions()
    sample = "EM-0000001.eml"
    assert (other.inbox / sample).read_bytes() != (base.inbox / sample).read_bytes()


# -- emails -----------------------------------------------------------------------------------


def test_every_email_parses_with_headers(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    assert list(base_emails) == [f"EM-{n:07d}" for n in range(1, 601)]
    bad = set(base.manifest.bad_records["emails"])
    previous = None
    for email_id, message in base_emails.items():
        assert message["To"] == "support@examplebank.test"
        assert message["Subject"]
        assert message["Message-ID"] == f"<{email_id}@mail.examplebank.test>"
        sent = message["Date"].datetime
        assert sent.utcoffset() == timedelta(0)
        assert date(2026, 11, 9) <= sent.date() <= date(2026, 11, 22)
        assert previous is None or previous <= sent  # ids are sequential in time order
        previous = sent
        if email_id in bad:
            assert "From" not in message
        else:
            assert message["From"].addresses[0].display_name
        assert len(_body(message)) > 40


def test_mail_mix_threads_multipart_attachments_strangers(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    crm_emails = {c["email"] for c in base.customers()}
    senders = {i: m["From"].addresses[0].addr_spec for i, m in base_emails.items() if "From" in m}
    by_message_id = {m["Message-ID"]: i for i, m in base_emails.items()}
    replies = [i for i, m in base_emails.items() if "In-Reply-To" in m and i in senders]
    assert 0.04 * 600 <= len(replies) <= 0.14 * 600
    for email_id in replies:
        message = base_emails[email_id]
        parent = by_message_id[message["In-Reply-To"]]
        assert parent < email_id and senders.get(parent) == senders.get(email_id)
        assert message["Subject"].startswith("Re: ")
        assert message["In-Reply-To"] in message["References"]

    alternative = [
        m for m in base_emails.values() if m.get_content_type() == "multipart/alternative"
    ]
    assert 0.12 * 600 <= len(alternative) <= 0.3 * 600
    html = alternative[0].get_body(preferencelist=("html",)).get_content()
    assert "<p>" in html
    assert _body(alternative[0]).split("\n")[0].rstrip(",") in html

    attached = [a for m in base_emails.values() for a in m.iter_attachments()]
    assert attached and all(a.get_filename() for a in attached)
    assert all(len(a.get_content()) > 40 for a in attached)

    strangers = [i for i, s in senders.items() if s not in crm_emails]
    assert 0.01 * 600 <= len(strangers) <= 0.06 * 600


def test_bodies_contain_pii_from_the_crm(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    customers = base.customers()
    accounts = {c["account_number"] for c in customers}
    crm_emails = {c["email"] for c in customers}
    phones = {c["phone"].replace(" ", "")[-10:] for c in customers}
    bodies = [_body(m) for m in base_emails.values()]
    text = "\n".join(bodies)
    assert sum(1 for body in bodies if set(ACCOUNT_RE.findall(body)) & accounts) > 60
    found_phones = {re.sub(r"\D", "", p)[-10:] for p in PHONE_RE.findall(text)}
    assert len(found_phones & phones) > 20
    assert any(address in text for address in crm_emails)
    cards = CARD_RE.findall(text)
    assert cards and all(luhn_valid(card) for card in cards)
    ibans = IBAN_RE.findall(text)
    assert ibans
    valid_ibans = {iban_for(a).replace(" ", "") for a in accounts}
    assert any(iban.replace(" ", "") in valid_ibans for iban in ibans)
    assert re.search(r"£\d[\d,]*\.\d\d", text)
    # identifiers are never split over two lines
    assert not re.search(r"\b07\d{3}\n\d{6}\b|\b\d{4}\n\d{4} \d{4} \d{4}\b", text)


# -- CRM and labels ---------------------------------------------------------------------------


def test_crm_rows_are_clean_except_the_planted_one(base: Dataset) -> None:
    customers = base.customers()
    assert list(customers[0]) == [
        "customer_id",
        "full_name",
        "email",
        "phone",
        "account_number",
        "segment",
        "joined_on",
        "city",
    ]
    for column in ("customer_id", "email", "account_number"):
        assert len({c[column] for c in customers}) == len(customers), column
    bad = base.manifest.bad_records["customers"]
    assert [c["customer_id"] for c in customers if c["segment"] == "UNKNOWN"] == bad
    clean = [c for c in customers if c["customer_id"] not in bad]
    assert {c["segment"] for c in clean} <= {"retail", "premier", "business"}
    retail = sum(c["segment"] == "retail" for c in clean) / len(clean)
    assert 0.5 <= retail <= 0.85
    for c in customers:
        assert re.fullmatch(r"C-\d{6}", c["customer_id"])
        assert re.fullmatch(r"\d{8}", c["account_number"])
        assert re.fullmatch(r"\+44 7\d{3} \d{6}", c["phone"])
        assert c["email"] == c["email"].lower() and "@" in c["email"]
        assert date(2005, 1, 1) <= date.fromisoformat(c["joined_on"]) < date(2026, 11, 9)
        assert all(c.values())


def test_labels_cover_exactly_the_reference_window(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    labels = base.labels()
    reference = {i for i, m in base_emails.items() if _sent_on(m) <= base.manifest.reference_end}
    assert [row["email_id"] for row in labels] == sorted(reference)
    for row in labels:
        assert row["queue"] in QUEUES and row["priority"] in PRIORITIES
        labelled = datetime.fromisoformat(row["labelled_at"])
        assert labelled >= base_emails[row["email_id"]]["Date"].datetime


def test_priority_follows_queue_and_urgency(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    labels = base.labels()

    def share_p1(rows: list[dict[str, str]]) -> float:
        return sum(r["priority"] == "P1" for r in rows) / max(len(rows), 1)

    fraud = [r for r in labels if r["queue"] == "card_fraud"]
    servicing = [r for r in labels if r["queue"] == "account_servicing"]
    assert share_p1(fraud) > 0.75 and share_p1(servicing) < 0.2
    urgent = [
        r
        for r in labels
        if r["queue"] != "card_fraud"
        and any(w in _body(base_emails[r["email_id"]]).lower() for w in ("urgent", "immediately"))
    ]
    calm = [r for r in labels if r["queue"] != "card_fraud" and r not in urgent]
    assert share_p1(urgent) > share_p1(calm) + 0.3


# -- drift ------------------------------------------------------------------------------------


def test_drift_leaves_the_reference_window_identical(base: Dataset, drifted: Dataset) -> None:
    reference_ids = {row["email_id"] for row in base.labels()}
    for email_id in sorted(reference_ids):
        name = f"{email_id}.eml"
        assert (base.inbox / name).read_bytes() == (drifted.inbox / name).read_bytes()
    assert (base.root / "labels" / "routing_labels.csv").read_bytes() == (
        drifted.root / "labels" / "routing_labels.csv"
    ).read_bytes()
    assert (base.root / "crm" / "customers.csv").read_bytes() == (
        drifted.root / "crm" / "customers.csv"
    ).read_bytes()


def test_drift_brings_a_fraud_wave_in_the_current_window(
    base: Dataset, drifted: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    start = base.manifest.current_start
    drift_emails = drifted.emails()
    current_base = [m for m in base_emails.values() if _sent_on(m) >= start]
    current_drift = [m for m in drift_emails.values() if _sent_on(m) >= start]
    assert len(current_base) == len(current_drift) == 300
    assert sum(map(_has_marker, base_emails.values())) == 0
    assert sum(map(_has_marker, current_drift)) > 0.25 * 300
    assert sum(len(_body(m)) for m in current_drift) > 1.1 * sum(
        len(_body(m)) for m in current_base
    )

    def wave(rows: list[tuple]) -> list[tuple]:
        lead = (start - timedelta(days=30)).isoformat()
        return [
            r
            for r in rows
            if r[3] >= lead and r[8] == 1 and r[4] is not None and r[4] <= -400
            and r[5] in ("EUR", "USD") and r[7] == "card"
        ]  # fmt: skip

    drift_wave = wave(drifted.transactions())
    assert len(wave(base.transactions())) <= 2 < 50 < len(drift_wave)
    writers = {m["From"].addresses[0].addr_spec for m in current_drift if "From" in m}
    crm = {c["customer_id"]: c["email"] for c in drifted.customers()}
    hit = {crm[r[1]] for r in drift_wave}
    assert hit <= writers and 0.2 <= len(hit) / len(writers & set(crm.values())) <= 0.4
    assert all(r[9] >= start.isoformat() for r in drift_wave)  # flagged in the current window


# -- bad records ------------------------------------------------------------------------------


def test_bad_records_are_planted_and_listed(
    base: Dataset, base_emails: dict[str, EmailMessage]
) -> None:
    bad = base.manifest.bad_records
    assert {k: len(v) for k, v in bad.items()} == {"emails": 1, "customers": 1, "transactions": 1}
    (email_id,) = bad["emails"]
    assert "From" not in base_emails[email_id]
    assert _sent_on(base_emails[email_id]) >= base.manifest.current_start
    assert sum("From" not in m for m in base_emails.values()) == 1
    (customer_id,) = bad["customers"]
    row = next(c for c in base.customers() if c["customer_id"] == customer_id)
    assert row["segment"] == "UNKNOWN"
    senders = {m["From"].addresses[0].addr_spec for m in base_emails.values() if "From" in m}
    assert row["email"] not in senders
    (txn_id,) = bad["transactions"]
    nulls = [r[0] for r in base.transactions() if r[4] is None]
    assert nulls == [txn_id]


def test_without_bad_records_everything_is_clean(tmp_path: Path) -> None:
    clean = _generate(tmp_path, seed=5, bad_records=False)
    assert clean.manifest.bad_records == {"emails": [], "customers": [], "transactions": []}
    assert all("From" in m for m in clean.emails().values())
    assert all(c["segment"] != "UNKNOWN" for c in clean.customers())
    assert all(r[4] is not None for r in clean.transactions())


# -- lifecycle --------------------------------------------------------------------------------


def test_regenerating_overwrites_previous_output(tmp_path: Path) -> None:
    _generate(tmp_path, seed=3)
    smaller = _generate(tmp_path, seed=3, emails_per_week=50, customers=20)
    assert len(list(smaller.inbox.glob("*.eml"))) == 100 == smaller.manifest.emails
    assert len(smaller.customers()) == 21


def test_one_week_has_an_empty_reference_window(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weeks"):
        generate_reference_data(tmp_path, weeks=0, **SMALL)
    single = _generate(tmp_path, weeks=1, emails_per_week=40, customers=20)
    m = single.manifest
    assert (m.emails, m.labels, single.labels()) == (40, 0, [])
    assert m.reference_end == m.reference_start - timedelta(days=1)
    assert m.current_start == m.reference_start == date(2026, 11, 9)
    assert len(m.bad_records["emails"]) == 1


def test_deliver_new_emails_adds_parseable_mail(base: Dataset, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(base.root, root)
    before = {p.name for p in (root / "mailbox" / "inbox").glob("*.eml")}
    day = date(2026, 11, 23)
    first = deliver_new_emails(root, count=8, seed=99, day=day)
    second = deliver_new_emails(root, count=4, seed=99, day=day, drift=True)
    new = first + second
    assert len(new) == 12 and len({p.name for p in new}) == 12
    assert not {p.name for p in new} & before
    assert all(p.name.startswith("EM-N99-20261123-") for p in new)
    crm = {c["email"] for c in base.customers() if c["segment"] != "UNKNOWN"}
    for path in new:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert _sent_on(message) == day
        sender = message["From"].addresses[0].addr_spec
        assert sender in crm or sender.split("@")[1] in vocab.UNKNOWN_DOMAINS
        assert _body(message)
    # same call on the same mailbox state writes the same bytes
    replay_root = tmp_path / "replay"
    shutil.copytree(base.root, replay_root)
    replay = deliver_new_emails(replay_root, count=8, seed=99, day=day)
    assert [p.read_bytes() for p in replay] == [p.read_bytes() for p in first]


# -- vocabulary invariants the labels and drift rely on ---------------------------------------


def _templates() -> dict[str, list[str]]:
    normal = [
        *vocab.GREETINGS,
        *vocab.OPENING_FILLERS,
        *vocab.CLOSING_FILLERS,
        *vocab.FOLLOW_UP_OPENERS,
        *vocab.ATTACHMENT_SENTENCES,
        *vocab.SIGN_OFFS,
        *vocab.DEVICE_FOOTERS,
        *(s for group in vocab.PII_SENTENCES.values() for s in group),
        *vocab.CARD_MERCHANTS,
        *vocab.ONLINE_MERCHANTS,
        *vocab.FOREIGN_MERCHANTS,
    ]
    for queue in QUEUES:
        normal += [*vocab.SUBJECTS[queue], *vocab.BODIES[queue]]
    drift = [*vocab.DRIFT_SUBJECTS, *vocab.DRIFT_BODIES, *vocab.DRIFT_DETAILS]
    return {"normal": normal, "drift": drift, "urgency": list(vocab.URGENCY_SENTENCES)}


def test_vocabulary_invariants() -> None:
    for queue in QUEUES:
        assert len(set(vocab.SUBJECTS[queue])) >= 8 and len(set(vocab.BODIES[queue])) >= 8
    groups = _templates()
    for text in (t for group in groups.values() for t in group):
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert fields <= compose.PLACEHOLDERS, text
    for text in groups["normal"]:
        assert not any(marker in text.lower() for marker in vocab.DRIFT_MARKERS), text
    fraud = set(vocab.BODIES["card_fraud"]) | set(vocab.SUBJECTS["card_fraud"])
    for text in groups["normal"]:
        if text not in fraud:
            assert not any(word in text.lower() for word in vocab.URGENCY_WORDS), text
    assert all(any(w in s.lower() for w in vocab.URGENCY_WORDS) for s in groups["urgency"])
