"""The support mailbox: planning a week of mail and writing each message as an ``.eml`` file.

A week is first *planned* (when each email is sent, by whom, about what, whether it follows up an
earlier thread) and then *written*. Planning comes first because the fraud wave needs to know
which customers write in the current week before their fraudulent card payments can be booked,
and those payments are then quoted in the emails.

Messages are built with ``email.message.EmailMessage`` under ``email.policy.default``. Two
things keep 20k messages inside the time budget, without changing a byte of output:
- headers are stored with ``set_raw`` (values are generated already well-formed and short)
  instead of ``msg[...] = ...``, which parses every header into a structured object only to
  serialise it again;
- while serialising, the stdlib re-reads ``Content-Type`` several times per part and each read
  re-parses it (and builds a new header class); ``make_mail_policy()`` is ``policy.default`` with a
  header factory that memoises parsed headers, which are immutable, for one generation run.
Multipart boundaries are set from the email id so output bytes are reproducible (the stdlib
otherwise draws them from the global random generator).
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from itertools import accumulate
from pathlib import Path

from aios_dagster.lib.generator import vocab
from aios_dagster.lib.generator.compose import compose_email
from aios_dagster.lib.generator.customers import Customer, Sender
from aios_dagster.lib.generator.transactions import Ledger

UNKNOWN_SENDER_P = 0.03
FOLLOW_UP_P = 0.10  # of emails whose sender wrote before: about 8% of all mail
MULTIPART_P = 0.20
ATTACHMENT_P = 0.02
MENTION_P = 0.7
AFFECTED_SHARE = 0.30  # of customers writing in the fraud-wave week
DRIFT_FRAUD_SHARE = 0.45
AFFECTED_FRAUD_P = 0.85
MAX_LINE = 78  # RFC 5322 recommended line length, the policy's default

# Monday..Sunday: weekdays busier than weekends.
_WEEKDAY_WEIGHTS = (1.2, 1.15, 1.1, 1.1, 1.0, 0.5, 0.4)
_HOUR_WEIGHTS = (
    0.3, 0.2, 0.1, 0.1, 0.1, 0.3, 0.8, 2.0, 4.5, 7.0, 7.5, 7.0,
    6.0, 6.5, 7.0, 6.5, 6.0, 5.0, 3.5, 3.0, 2.8, 2.2, 1.4, 0.7,
)  # fmt: skip
_HOUR_CUM = tuple(accumulate(_HOUR_WEIGHTS))
_QUEUE_CUM = tuple(accumulate(vocab.QUEUE_MIX))


@dataclass(frozen=True)
class MailWorld:
    """Who can write in: CRM customers (with how often each writes) and strangers.

    ``ledger`` is the everyday ledger, quoted by dispute and fraud emails (``None`` when
    delivering ad-hoc mail without the bank database; amounts and merchants are then invented).
    """

    senders: Sequence[Sender]
    cum_weights: Sequence[float]
    strangers: Sequence[Sender]
    ledger: Ledger | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One planned email."""

    email_id: str
    sent_at: datetime
    sender: Sender
    topic: str
    reply_to: str | None  # email_id of the earlier email in the same thread
    fraud_wave: bool  # written with the fraud wave's vocabulary


@dataclass(frozen=True)
class WeekPlan:
    slots: list[Slot]
    affected: list[Customer]  # customers hit by the fraud wave (empty without drift)


@dataclass(frozen=True, slots=True)
class EmailRecord:
    """What the generator knows about a written email: the hidden truth labels derive from."""

    email_id: str
    sent_at: datetime
    sender: Sender
    topic: str
    text: str  # subject and body as written, what a router reads


@dataclass
class Threads:
    """Mailbox history carried from week to week, so follow-ups can reply to older mail.

    ``last_by_sender``: sender address -> (email_id, topic) of their latest email;
    ``subjects``: email_id -> (subject, sent_at, References chain) of every written email.
    """

    last_by_sender: dict[str, tuple[str, str]] = field(default_factory=dict)
    subjects: dict[str, tuple[str, datetime, str]] = field(default_factory=dict)


class _MemoHeaderFactory(HeaderRegistry):
    """``HeaderRegistry`` that parses each distinct (name, value) once (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[str, str], BaseHeader] = {}

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name.lower(), value)
        header = self._memo.get(key)
        if header is None:
            header = self._memo[key] = super().__call__(name, value)
        return header


def make_mail_policy() -> EmailPolicy:
    """``policy.default`` with a memoising header factory; make one per generation run."""
    return policy.default.clone(header_factory=_MemoHeaderFactory())


def message_id(email_id: str) -> str:
    return f"<{email_id}@{vocab.MESSAGE_ID_DOMAIN}>"


def daily_counts(days: Sequence[date], total: int) -> list[int]:
    """Split ``total`` over ``days`` by weekday weight (largest remainder, deterministic)."""
    weights = [_WEEKDAY_WEIGHTS[day.weekday()] for day in days]
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(days)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def send_times(rng: random.Random, day: date, count: int) -> list[datetime]:
    """``count`` sorted moments within ``day`` (UTC), weighted to working hours."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=count)
    seconds = sorted(hour * 3600 + rng.randrange(3600) for hour in hours)
    return [midnight + timedelta(seconds=s) for s in seconds]


def plan_week(
    rng: random.Random,
    *,
    days: Sequence[date],
    ids: Sequence[str],
    world: MailWorld,
    threads: Threads,
    fraud_wave: bool,
) -> WeekPlan:
    """Plan ``len(ids)`` emails over ``days``; ids are given in time order.

    With ``fraud_wave`` a share of the week's writers is hit by card fraud: they mostly write
    about it, and the other writers' card-fraud share is raised so the week reaches about 45%.
    """
    counts = daily_counts(days, len(ids))
    times = [
        moment
        for day, count in zip(days, counts, strict=True)
        for moment in send_times(rng, day, count)
    ]
    known = rng.choices(world.senders, cum_weights=world.cum_weights, k=len(ids))
    senders = [
        rng.choice(world.strangers) if rng.random() < UNKNOWN_SENDER_P else sender
        for sender in known
    ]

    affected_ids: set[str] = set()
    affected: list[Customer] = []
    other_fraud_p = 0.0
    if fraud_wave:
        writers = list({s.customer.customer_id: s.customer for s in senders if s.customer}.values())
        affected = rng.sample(writers, round(AFFECTED_SHARE * len(writers)))
        affected.sort(key=lambda c: c.customer_id)
        affected_ids = {c.customer_id for c in affected}
        from_affected = sum(
            1 for s in senders if s.customer and s.customer.customer_id in affected_ids
        )
        share = from_affected / max(len(senders), 1)
        base = vocab.QUEUE_MIX[0]
        needed = (DRIFT_FRAUD_SHARE - share * AFFECTED_FRAUD_P) / max(1.0 - share, 1e-9)
        other_fraud_p = min(max((needed - base) / (1.0 - base), 0.0), 1.0)

    slots: list[Slot] = []
    for email_id, sent_at, sender in zip(ids, times, senders, strict=True):
        previous = threads.last_by_sender.get(sender.address)
        reply_to: str | None = None
        wave = False
        if previous is not None and rng.random() < FOLLOW_UP_P:
            reply_to, topic = previous
        elif fraud_wave:
            hit = sender.customer is not None and sender.customer.customer_id in affected_ids
            if rng.random() < (AFFECTED_FRAUD_P if hit else other_fraud_p):
                topic = "card_fraud"
            else:
                topic = rng.choices(vocab.QUEUES, cum_weights=_QUEUE_CUM)[0]
            wave = topic == "card_fraud" and rng.random() < (0.9 if hit else 0.6)
        else:
            topic = rng.choices(vocab.QUEUES, cum_weights=_QUEUE_CUM)[0]
        threads.last_by_sender[sender.address] = (email_id, topic)
        slots.append(Slot(email_id, sent_at, sender, topic, reply_to, wave))
    return WeekPlan(slots=slots, affected=affected)


def _attachment_bytes(rng: random.Random, subtype: str) -> bytes:
    noise = rng.randbytes(rng.randint(48, 240))
    if subtype == "pdf":
        return b"%PDF-1.4\n" + noise + b"\n%%EOF\n"
    if subtype == "png":
        return b"\x89PNG\r\n\x1a\n" + noise
    return b"\xff\xd8\xff\xe0" + noise + b"\xff\xd9"


def _fill_text(part: MIMEPart, text: str, subtype: str) -> None:
    """Make ``part`` a UTF-8 text part, the way ``set_content`` would but without re-parsing.

    ``set_content`` encodes the text, stores it with ``set_payload`` and then sets the MIME
    headers through the header parser. Our bodies are wrapped well under the 78-column limit, so
    the encoding is always 7bit (ASCII) or 8bit (with £ or €) and the headers are fixed strings;
    lines that are too long (rare, e.g. HTML-escaped text) go through ``set_content`` instead,
    which picks quoted-printable.
    """
    data = text.encode("utf-8")
    if any(len(line) > MAX_LINE for line in data.split(b"\n")):
        part.set_content(text, subtype=subtype)
        return
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", "7bit" if data.isascii() else "8bit")
    part.set_payload(data.decode("ascii", "surrogateescape"))


def _fill_multipart(part: MIMEPart, subtype: str, boundary: str, parts: list[MIMEPart]) -> None:
    part.set_raw("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    part.set_payload(parts)


def render_eml(
    *,
    email_id: str,
    sender: Sender | None,
    sent_at: datetime,
    subject: str,
    text: str,
    html: str | None = None,
    references: str | None = None,
    attachment: tuple[str, str, str, bytes] | None = None,
    mail_policy: EmailPolicy = policy.default,
) -> bytes:
    """One RFC 5322 message. ``sender=None`` omits ``From`` (the deliberately bad email);
    ``references`` is the thread's Message-ID chain, whose last id is the parent.

    Structure: text/plain; or multipart/alternative (plain + html); either of those inside
    multipart/mixed when there is an attachment. Boundaries derive from the email id.
    """
    msg = EmailMessage(policy=mail_policy)
    if sender is not None:
        msg.set_raw("From", f'"{sender.name}" <{sender.address}>')
    msg.set_raw("To", vocab.SUPPORT_ADDRESS)
    msg.set_raw("Subject", subject)
    msg.set_raw("Date", email.utils.format_datetime(sent_at))
    msg.set_raw("Message-ID", message_id(email_id))
    if references:
        msg.set_raw("In-Reply-To", references.rsplit(" ", 1)[-1])
        msg.set_raw("References", references)
    msg.set_raw("MIME-Version", "1.0")

    body: MIMEPart = msg if attachment is None else MIMEPart(policy=mail_policy)
    if html is None:
        _fill_text(body, text, "plain")
    else:
        plain, rich = MIMEPart(policy=mail_policy), MIMEPart(policy=mail_policy)
        _fill_text(plain, text, "plain")
        _fill_text(rich, html, "html")
        _fill_multipart(body, "alternative", f"=_{email_id}_alt", [plain, rich])
    if attachment is not None:
        filename, maintype, subtype, data = attachment
        attached = MIMEPart(policy=mail_policy)
        attached.set_content(data, maintype=maintype, subtype=subtype, filename=filename)
        _fill_multipart(msg, "mixed", f"=_{email_id}_mix", [body, attached])
    return msg.as_bytes()


def write_week(
    inbox: Path,
    rng: random.Random,
    plan: WeekPlan,
    world: MailWorld,
    threads: Threads,
    *,
    wave_ledger: Ledger | None = None,
    without_from: frozenset[str] = frozenset(),
    mail_policy: EmailPolicy | None = None,
) -> list[EmailRecord]:
    """Compose and write every planned email to ``inbox/<email_id>.eml``, in time order."""
    msg_policy = mail_policy or make_mail_policy()
    records: list[EmailRecord] = []
    for slot in plan.slots:
        customer = slot.sender.customer
        ts = int(slot.sent_at.timestamp())
        mention = None
        if customer is not None and slot.topic in ("card_fraud", "disputes"):
            ledger = wave_ledger if slot.fraud_wave else world.ledger
            if ledger is not None and rng.random() < MENTION_P:
                mention = ledger.recent_spend(customer.customer_id, ts, rng, within_days=14)
        reply_subject = prev_sent_at = references = None
        if slot.reply_to is not None:
            reply_subject, prev_sent_at, parent_refs = threads.subjects[slot.reply_to]
            references = f"{parent_refs} {message_id(slot.reply_to)}".strip()
        attachment = None
        if rng.random() < ATTACHMENT_P:
            filename, maintype, subtype = rng.choice(vocab.ATTACHMENTS)
            attachment = (filename, maintype, subtype, _attachment_bytes(rng, subtype))
        composition = compose_email(
            rng,
            topic=slot.topic,
            sender=slot.sender,
            sent_at=slot.sent_at,
            fraud_wave=slot.fraud_wave,
            mention=mention,
            reply_subject=reply_subject,
            prev_sent_at=prev_sent_at,
            attachment=attachment[0] if attachment else None,
        )
        multipart = rng.random() < MULTIPART_P
        data = render_eml(
            email_id=slot.email_id,
            sender=None if slot.email_id in without_from else slot.sender,
            sent_at=slot.sent_at,
            subject=composition.subject,
            text=composition.text,
            html=composition.html if multipart else None,
            references=references,
            attachment=attachment,
            mail_policy=msg_policy,
        )
        (inbox / f"{slot.email_id}.eml").write_bytes(data)
        threads.subjects[slot.email_id] = (composition.subject, slot.sent_at, references or "")
        records.append(
            EmailRecord(
                email_id=slot.email_id,
                sent_at=slot.sent_at,
                sender=slot.sender,
                topic=slot.topic,
                text=f"{composition.subject}\n{composition.text}",
            )
        )
    return records
