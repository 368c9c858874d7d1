"""Mailbox connector: a folder of RFC 5322 ``.eml`` files becomes rows of parsed emails.

Parsing keeps what routing needs (headers, the plain-text body, thread links, attachment names)
and never loads attachment payloads (the body is :mod:`~aios_dagster.lib.connectors.mail_body`).
A file that cannot be parsed is not dropped: it becomes a row with ``parse_error`` set, and the
contract sends it to quarantine with that reason.

Header values are unfolded and NUL bytes dropped. A message without a usable ``Date:`` is still
real customer mail (a third of one real corpus had none): its time comes from the earliest
``Received:`` hop, else from when it was delivered (the file's modification time), and
``received_at_source`` says which, so times that are a fallback can be told apart.
"""

from __future__ import annotations

import email
import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import pandas as pd

from aios_dagster.lib.connectors.mail_body import body_parts, html_to_text, strip_nul

__all__ = ["EMAIL_COLUMNS", "ParsedEmail", "html_to_text", "parse_eml", "parse_message"]

EMAIL_COLUMNS = (
    "email_id",
    "message_id",
    "in_reply_to",
    "thread_id",
    "sender_address",
    "sender_name",
    "subject",
    "body",
    "received_at",
    "received_at_source",
    "attachment_names",
    "has_html",
    "source_file",
    "parse_error",
)

DATE_HEADER = "date_header"
RECEIVED_HEADER = "received_header"
DELIVERY_TIME = "delivery_time"
RECEIVED_AT_SOURCES = (DATE_HEADER, RECEIVED_HEADER, DELIVERY_TIME)

_MSGID = re.compile(r"<([^>]+)>")
_FOLD = re.compile(r"\r?\n[ \t]+")


def _msgid(value: str | None) -> str | None:
    if not value:
        return None
    m = _MSGID.search(value)
    return m.group(1) if m else value.strip()


@dataclass(frozen=True)
class ParsedEmail:
    email_id: str
    message_id: str | None
    in_reply_to: str | None
    thread_id: str | None
    sender_address: str | None
    sender_name: str | None
    subject: str | None
    body: str | None
    received_at: datetime | None
    received_at_source: str | None  # one of RECEIVED_AT_SOURCES; None when no time at all
    attachment_names: list[str]
    has_html: bool
    source_file: str
    parse_error: str | None


def unfold(value: str) -> str:
    """A header value on one line (RFC 5322 unfolding), without NUL bytes."""
    return strip_nul(_FOLD.sub(" ", value))


def _header(msg: Message, name: str) -> str | None:
    """A header as text, unfolded, RFC 2047 encoded-words decoded (``=?utf-8?q?...?=``)."""
    value = msg.get(name)
    if value is None:
        return None
    text = unfold(str(value))
    if "=?" in text:  # only encoded-words need decoding, and decoding is most of the cost
        text = strip_nul(str(make_header(decode_header(text))))
    return text.strip() or None


def _raw_header(msg: Message, name: str) -> str | None:
    """A header that is never encoded (message ids), unfolded."""
    value = msg.get(name)
    return None if value is None else unfold(str(value)).strip() or None


def _date(value: object) -> datetime | None:
    """An RFC 5322 date in UTC, or None where there is none that parses (never raises)."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(unfold(str(value)).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def received_time(
    msg: Message, delivered_at: datetime | None
) -> tuple[datetime | None, str | None]:
    """When the message was received, and which of :data:`RECEIVED_AT_SOURCES` said so.

    ``Date:`` is the sender's own stamp and the usual choice. Without one that parses, each
    ``Received:`` header ends in ``; <date>`` and the bottom-most is the first hop, the closest
    to when the mail was sent. Failing both, the time it was delivered to us.
    """
    when = _date(msg.get("Date"))
    if when is not None:
        return when, DATE_HEADER
    for hop in reversed(msg.get_all("Received") or []):
        when = _date(str(hop).rpartition(";")[2])
        if when is not None:
            return when, RECEIVED_HEADER
    if delivered_at is not None:
        return delivered_at.astimezone(UTC), DELIVERY_TIME
    return None, None


def parse_eml(path: Path) -> ParsedEmail:
    """Parse one message file; problems are reported in ``parse_error``, never raised."""
    try:
        raw = path.read_bytes()
        delivered_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        return parse_message(b"", path.name, read_error=f"{type(exc).__name__}: {exc}")
    return parse_message(raw, path.name, delivered_at=delivered_at)


def parse_message(
    raw: bytes,
    name: str,
    *,
    read_error: str | None = None,
    delivered_at: datetime | None = None,
) -> ParsedEmail:
    """Parse one message's bytes (``name`` is its file name, the fallback id).

    ``delivered_at`` (a file's modification time) is the time of last resort for mail that
    carries none. Uses the stdlib's compat32 parser and decodes only the headers we keep: the
    modern ``policy.default`` parses every header into objects and was 5x slower on a 20k
    mailbox.
    """
    stem = name.rsplit("/", 1)[-1].removesuffix(".eml")
    try:
        if read_error:
            raise OSError(read_error)
        if not raw.strip():
            raise ValueError("empty file")
        msg = email.message_from_bytes(raw)
        if msg.defects and not msg.keys():
            raise ValueError(f"not an RFC 5322 message: {msg.defects[0]!r}")
        message_id = _msgid(_raw_header(msg, "Message-ID"))
        refs = _raw_header(msg, "References")
        in_reply_to = _msgid(_raw_header(msg, "In-Reply-To"))
        root = _msgid(refs.split()[0]) if refs else in_reply_to
        thread_root = root or message_id
        # parseaddr on the raw header: decoding encoded-words first would let a display name
        # such as "=?utf-8?q?x_=3Cceo=40evil=3E?=" pose as the address.
        sender_name, sender = email.utils.parseaddr(unfold(str(msg.get("From") or "")))
        display = str(make_header(decode_header(sender_name))) if sender_name else ""
        received, received_source = received_time(msg, delivered_at)
        parts = body_parts(msg)
        return ParsedEmail(
            email_id=(message_id.split("@")[0] if message_id else stem),
            message_id=message_id,
            in_reply_to=in_reply_to,
            thread_id=(thread_root.split("@")[0] if thread_root else None),
            sender_address=sender.lower() if sender else None,
            sender_name=strip_nul(display).strip() or None,
            subject=_header(msg, "Subject"),
            body=parts.body,
            received_at=received,
            received_at_source=received_source,
            attachment_names=parts.attachments,
            has_html=parts.has_html,
            source_file=name,
            parse_error=None,
        )
    except Exception as exc:  # a bad file is a quarantined record, not a crashed run
        return ParsedEmail(
            email_id=stem,
            message_id=None,
            in_reply_to=None,
            thread_id=None,
            sender_address=None,
            sender_name=None,
            subject=None,
            body=None,
            received_at=None,
            received_at_source=None,
            attachment_names=[],
            has_html=False,
            source_file=name,
            parse_error=f"{type(exc).__name__}: {exc}",
        )


def read_mailbox(paths: Iterable[Path]) -> pd.DataFrame:
    """Parse message files into a frame with :data:`EMAIL_COLUMNS`."""
    rows = [parse_eml(p).__dict__ for p in paths]
    frame = pd.DataFrame(rows, columns=list(EMAIL_COLUMNS))
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    return frame
