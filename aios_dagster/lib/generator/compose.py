"""Writing one support email: subject and body text from the templates in ``vocab``.

A body is greeting, a topic paragraph (template plus optional follow-up opener, filler, attachment
note, urgency sentence and, in the fraud wave, extra detail), a paragraph of identifiers the
customer volunteers (account, phone, card, IBAN, their own address) and a sign-off. Values are
filled lazily (``_Facts``) so an email only draws the random numbers its chosen templates need,
which keeps generation fast. Bodies are wrapped at 70 columns like a plain-text mail client, but
an identifier is never split over two lines, so what a masking regex sees is what a human sees.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from aios_dagster.lib.generator import pii, vocab
from aios_dagster.lib.generator.customers import Sender
from aios_dagster.lib.generator.transactions import DAY_S, TxnRef

WRAP_WIDTH = 70
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "first",
        "name",
        "amount",
        "merchant",
        "date",
        "day",
        "account",
        "card",
        "last4",
        "iban",
        "sort_code",
        "phone",
        "email",
        "loan_amount",
        "city",
        "n_days",
        "ref",
        "prev_date",
        "attachment",
    }
)
_URGENCY_P: dict[str, float] = {
    "card_fraud": 0.45,
    "disputes": 0.15,
    "login_access": 0.25,
    "loans": 0.06,
    "complaints": 0.2,
    "account_servicing": 0.06,
}
_CARD_P: dict[str, float] = {"card_fraud": 0.25, "disputes": 0.2}
_IBAN_P: dict[str, float] = {"account_servicing": 0.12, "disputes": 0.08, "loans": 0.08}
_CURRENCY_SIGN = {"GBP": "£", "EUR": "€", "USD": "$"}
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TYPO_P = 0.12


@dataclass(frozen=True, slots=True)
class Composition:
    """A written email: subject and wrapped paragraphs (plain text; HTML derived from them)."""

    subject: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs) + "\n"

    @property
    def html(self) -> str:
        blocks = (
            "<p>" + html.escape(paragraph, quote=False).replace("\n", "<br>\n") + "</p>"
            for paragraph in self.paragraphs
        )
        return "<html><body>\n" + "\n".join(blocks) + "\n</body></html>\n"


def money(amount: float, currency: str = "GBP") -> str:
    """``£1,234.50``: how customers quote amounts (sign dropped, they say "a payment of")."""
    return f"{_CURRENCY_SIGN.get(currency, '£')}{abs(amount):,.2f}"


def day_text(moment: datetime) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]}"


class _Facts(dict[str, str]):
    """The values templates can use, each computed (and its randomness drawn) on first use."""

    def __init__(
        self,
        rng: random.Random,
        sender: Sender,
        sent_at: datetime,
        mention: TxnRef | None,
        fraud_wave: bool,
        prev_sent_at: datetime | None,
        attachment: str | None,
    ) -> None:
        super().__init__()
        self.rng = rng
        self.sender = sender
        self.sent_at = sent_at
        self.mention = mention
        self.fraud_wave = fraud_wave
        self.prev_sent_at = prev_sent_at
        self.attachment = attachment
        self._cached_event: datetime | None = None
        self._cached_account: str | None = None

    def __missing__(self, key: str) -> str:
        value = getattr(self, f"_{key}")()
        self[key] = value
        return value

    # -- shared state -------------------------------------------------------------------------
    def event(self) -> datetime:
        """The day the customer is writing about: the quoted payment's, else a recent day."""
        if self._cached_event is None:
            if self.mention is not None:
                self._cached_event = datetime.fromtimestamp(self.mention.booked_ts, UTC)
            else:
                ts = self.sent_at.timestamp() - self.rng.randint(1, 10) * DAY_S
                self._cached_event = datetime.fromtimestamp(ts, UTC)
        return self._cached_event

    def account(self) -> str:
        if self._cached_account is None:
            customer = self.sender.customer
            self._cached_account = (
                customer.account_number
                if customer is not None
                else str(self.rng.randrange(10_000_000, 100_000_000))
            )
        return self._cached_account

    # -- placeholders -------------------------------------------------------------------------
    def _first(self) -> str:
        return self.sender.first_name

    def _name(self) -> str:
        return self.sender.name

    def _amount(self) -> str:
        if self.mention is not None:
            return money(self.mention.amount, self.mention.currency)
        if self.fraud_wave:
            return money(self.rng.uniform(400, 3000), self.rng.choice(("EUR", "USD")))
        return money(round(self.rng.lognormvariate(3.6, 0.9), 2))

    def _merchant(self) -> str:
        if self.mention is not None:
            return self.mention.merchant
        if self.fraud_wave:
            return self.rng.choice(vocab.DRIFT_MERCHANTS)
        return self.rng.choice(vocab.CARD_MERCHANTS + vocab.ONLINE_MERCHANTS)

    def _date(self) -> str:
        event = self.event()
        days_ago = (self.sent_at.date() - event.date()).days
        if days_ago <= 0:
            return "earlier today"
        if days_ago == 1:
            return "yesterday"
        style = self.rng.randrange(3)
        if style == 0 and days_ago <= 6:
            return f"last {_WEEKDAYS[event.weekday()]}"
        if style == 1:
            return f"on {event:%d/%m/%Y}"
        return f"on {day_text(event)}"

    def _day(self) -> str:
        return day_text(self.event())

    def _account(self) -> str:
        return self.account()

    def _card(self) -> str:
        card = pii.card_number_for(self.account())
        if self.rng.random() < 0.2:
            return card.replace(" ", "")
        return card.replace(" ", pii.KEEP_TOGETHER)

    def _last4(self) -> str:
        return pii.card_number_for(self.account())[-4:]

    def _iban(self) -> str:
        iban = pii.iban_for(self.account())
        if self.rng.random() < 0.3:
            return iban.replace(" ", "")
        return iban.replace(" ", pii.KEEP_TOGETHER)

    def _sort_code(self) -> str:
        return pii.sort_code_for(self.account())

    def _phone(self) -> str:
        customer = self.sender.customer
        phone = customer.phone if customer is not None else pii.random_mobile(self.rng)
        return pii.restyle_phone(phone, self.rng).replace(" ", pii.KEEP_TOGETHER)

    def _email(self) -> str:
        customer = self.sender.customer
        return customer.email if customer is not None else self.sender.address

    def _loan_amount(self) -> str:
        return f"£{self.rng.randrange(2, 61) * 500:,}"

    def _city(self) -> str:
        customer = self.sender.customer
        return customer.city if customer is not None else self.rng.choice(vocab.CITIES)

    def _n_days(self) -> str:
        return str(self.rng.randint(5, 40))

    def _ref(self) -> str:
        return f"CR-{self.rng.randrange(10_000, 100_000)}"

    def _prev_date(self) -> str:
        return day_text(self.prev_sent_at or self.event())

    def _attachment(self) -> str:
        return f"the {self.attachment}" if self.attachment else "a screenshot"


def wrap(text: str, width: int = WRAP_WIDTH) -> str:
    """Greedy word wrap; ``KEEP_TOGETHER`` joins the parts of one identifier until the end."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if not word:
            continue
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return "\n".join(lines).replace(pii.KEEP_TOGETHER, " ")


def add_typo(rng: random.Random, text: str) -> str:
    """One realistic slip (swapped, dropped or doubled letter) in a plain word of the text."""
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word = words[index]
    k = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        word = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
    elif kind == 1:
        word = word[:k] + word[k + 1 :]
    else:
        word = word[:k] + word[k] + word[k:]
    words[index] = word
    return " ".join(words)


def compose_email(
    rng: random.Random,
    *,
    topic: str,
    sender: Sender,
    sent_at: datetime,
    fraud_wave: bool = False,
    mention: TxnRef | None = None,
    reply_subject: str | None = None,
    prev_sent_at: datetime | None = None,
    attachment: str | None = None,
) -> Composition:
    """Write one email about ``topic``.

    ``fraud_wave`` switches a card-fraud email to the drift vocabulary (longer, new words);
    ``reply_subject`` makes it a follow-up in an existing thread; ``mention`` is a ledger payment
    the customer quotes.
    """
    facts = _Facts(rng, sender, sent_at, mention, fraud_wave, prev_sent_at, attachment)
    paragraphs: list[str] = []
    if rng.random() < 0.85:
        paragraphs.append(rng.choice(vocab.GREETINGS))

    main: list[str] = []
    if reply_subject is not None:
        main.append(rng.choice(vocab.FOLLOW_UP_OPENERS))
    if rng.random() < 0.3:
        main.append(rng.choice(vocab.OPENING_FILLERS))
    if fraud_wave:
        main.append(rng.choice(vocab.DRIFT_BODIES))
        main.extend(rng.sample(vocab.DRIFT_DETAILS, rng.randint(2, 4)))
    else:
        main.append(rng.choice(vocab.BODIES[topic]))
    if attachment is not None:
        main.append(rng.choice(vocab.ATTACHMENT_SENTENCES))
    if rng.random() < (0.6 if fraud_wave else _URGENCY_P[topic]):
        main.append(rng.choice(vocab.URGENCY_SENTENCES))
    main_text = " ".join(main).format_map(facts)
    if rng.random() < _TYPO_P:
        main_text = add_typo(rng, main_text)
    paragraphs.append(wrap(main_text))

    details = [
        rng.choice(vocab.PII_SENTENCES[kind])
        for kind, p in (
            ("account", 0.4),
            ("phone", 0.3),
            ("email", 0.12),
            ("card", _CARD_P.get(topic, 0.03)),
            ("iban", _IBAN_P.get(topic, 0.02)),
        )
        if rng.random() < p
    ]
    if rng.random() < 0.4:
        details.append(rng.choice(vocab.CLOSING_FILLERS))
    if details:
        paragraphs.append(wrap(" ".join(details).format_map(facts)))

    signature = [rng.choice(vocab.SIGN_OFFS), sender.name if rng.random() < 0.6 else "{first}"]
    if rng.random() < 0.1:
        signature.append("Mob: {phone}")
    paragraphs.append("\n".join(signature).format_map(facts).replace(pii.KEEP_TOGETHER, " "))
    if rng.random() < 0.1:
        paragraphs.append(rng.choice(vocab.DEVICE_FOOTERS))

    if reply_subject is not None:
        subject = "Re: " + reply_subject.removeprefix("Re: ")
    elif fraud_wave and rng.random() < 0.7:
        subject = rng.choice(vocab.DRIFT_SUBJECTS)
    else:
        subject = rng.choice(vocab.SUBJECTS[topic]).format_map(facts)
    return Composition(subject=subject, paragraphs=tuple(paragraphs))
