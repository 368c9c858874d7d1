"""Mailbox parsing: headers, threads, HTML-only bodies, attachments, and broken files."""

import os
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from aios_dagster.lib.connectors.mailbox import (
    EMAIL_COLUMNS,
    parse_eml,
    parse_message,
    read_mailbox,
)


def _write(path: Path, msg: EmailMessage) -> Path:
    path.write_bytes(bytes(msg))
    return path


def _msg(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    return msg


def test_plain_reply_with_attachment(tmp_path: Path) -> None:
    msg = _msg(
        From='"Jane Doe" <Jane@Example.com>',
        To="support@examplebank.test",
        Subject="Re: card blocked",
        Date="Tue, 17 Nov 2026 09:15:00 +0000",
        Message_ID="<EM-0000002@mail.examplebank.test>",
        In_Reply_To="<EM-0000001@mail.examplebank.test>",
        References="<EM-0000001@mail.examplebank.test>",
    )
    msg.set_content("Still blocked, please help.")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="st.pdf")
    parsed = parse_eml(_write(tmp_path / "EM-0000002.eml", msg))
    assert parsed.parse_error is None
    assert parsed.email_id == "EM-0000002" and parsed.thread_id == "EM-0000001"
    assert parsed.sender_address == "jane@example.com"
    assert parsed.body == "Still blocked, please help."
    assert parsed.attachment_names == ["st.pdf"]
    assert parsed.received_at is not None and parsed.received_at.hour == 9


def test_html_only_body_becomes_text(tmp_path: Path) -> None:
    msg = _msg(From="a@b.co", Subject="x", Message_ID="<EM-9@x>")
    msg.set_content("<p>Hello</p><p>My card was <b>stolen</b></p>", subtype="html")
    parsed = parse_eml(_write(tmp_path / "EM-9.eml", msg))
    assert parsed.body == "Hello\nMy card was stolen"
    assert parsed.has_html


def test_broken_files_become_rows_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "binary.eml").write_bytes(bytes(range(256)) * 4)
    frame = read_mailbox(sorted(tmp_path.glob("*.eml")))
    assert len(frame) == 2
    empty = frame.set_index("source_file").loc["empty.eml"]
    assert empty["parse_error"] == "ValueError: empty file"
    binary = frame.set_index("source_file").loc["binary.eml"]
    # Not an RFC 5322 message: no sender and no date, which the emails contract quarantines.
    assert binary["sender_address"] is None


def test_sender_comes_from_the_address_not_an_encoded_display_name(tmp_path: Path) -> None:
    raw = (
        b"From: =?utf-8?q?Jane_=3Cceo=40evil.example=3E?= <jane@example.com>\r\n"
        b"Subject: hi\r\nMessage-ID: <EM-7@x>\r\nDate: Tue, 17 Nov 2026 09:15:00 +0000\r\n\r\n"
        b"body\r\n"
    )
    (tmp_path / "EM-7.eml").write_bytes(raw)
    parsed = parse_eml(tmp_path / "EM-7.eml")
    assert parsed.sender_address == "jane@example.com"
    assert parsed.sender_name == "Jane <ceo@evil.example>"


def test_inline_text_part_with_a_filename_is_the_body(tmp_path: Path) -> None:
    msg = _msg(From="a@b.co", Subject="x", Message_ID="<EM-8@x>")
    msg.set_content("my note")
    msg.replace_header("Content-Type", 'text/plain; charset="utf-8"; name="note.txt"')
    msg["Content-Disposition"] = 'inline; filename="note.txt"'
    parsed = parse_eml(_write(tmp_path / "EM-8.eml", msg))
    assert parsed.body == "my note" and parsed.attachment_names == []


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def test_mail_without_date_takes_the_earliest_received_hop() -> None:
    parsed = parse_eml(FIXTURES / "no_date.eml")
    assert parsed.parse_error is None
    # The bottom-most Received header is the first hop: 09:00:03 +0100 is 08:00:03 UTC.
    assert parsed.received_at == datetime(2026, 11, 11, 8, 0, 3, tzinfo=UTC)
    assert parsed.received_at_source == "received_header"


def test_mail_without_date_or_received_takes_the_delivery_time(tmp_path: Path) -> None:
    path = tmp_path / "no_date_no_received.eml"
    shutil.copy(FIXTURES / path.name, path)
    delivered = datetime(2026, 11, 12, 7, 30, tzinfo=UTC)
    os.utime(path, (delivered.timestamp(), delivered.timestamp()))
    parsed = parse_eml(path)
    assert parsed.received_at == delivered and parsed.received_at_source == "delivery_time"


def test_an_unparseable_date_falls_back_instead_of_losing_the_mail(tmp_path: Path) -> None:
    raw = (
        (FIXTURES / "no_date.eml")
        .read_bytes()
        .replace(b"Subject:", b"Date: sometime last week\nSubject:")
    )
    parsed = parse_message(raw, "garbled_date.eml")
    assert parsed.parse_error is None and parsed.received_at_source == "received_header"
    dated = parse_eml(FIXTURES / "digest.eml")
    assert dated.received_at_source == "date_header"


def test_multipart_with_an_unusable_boundary_keeps_its_text() -> None:
    wrong = parse_eml(FIXTURES / "bad_boundary.eml")
    assert wrong.parse_error is None
    assert wrong.body == "I want to dispute a payment of £49.99 to an online shop I never used."
    assert wrong.attachment_names == ["receipt.pdf"]
    missing = parse_eml(FIXTURES / "no_boundary.eml")
    assert missing.body == (
        "I have been locked out of online banking after three wrong passwords.\n"
        "Please reset my access."
    )


def test_a_digest_keeps_every_text_part() -> None:
    parsed = parse_eml(FIXTURES / "digest.eml")
    assert parsed.body is not None
    for text in ("First part: my card is lost.", "Second part: please freeze it.", "Third part"):
        assert text in parsed.body
    assert parsed.has_html


def test_folded_headers_are_unfolded() -> None:
    parsed = parse_eml(FIXTURES / "folded_headers.eml")
    assert parsed.subject == (
        "A very long subject line about a standing order that was cancelled without my "
        "consent last month"
    )
    assert parsed.sender_name == "Margaret Okonkwo-Smith"
    assert parsed.email_id == "RM-FOLDED-1"


def test_nul_bytes_are_stripped_from_subject_and_body() -> None:
    parsed = parse_eml(FIXTURES / "nul_bytes.eml")
    assert parsed.subject == "Transfer failed"
    assert parsed.body == "My transfer of 200 GBP failed."


def test_files_that_are_not_mail_are_rejected_once_and_named(tmp_path: Path) -> None:
    from aios_dagster.lib.connectors.mailbox_source import MailboxReader, MailboxSourceConfig

    shutil.copy(FIXTURES / "digest.eml", tmp_path / "a.eml")
    (tmp_path / "notes.txt").write_text("see ticket")
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # hidden and partial names are not deliveries
    (tmp_path / "b.eml.tmp").write_bytes(b"still copying")
    reader = MailboxReader(MailboxSourceConfig(path=str(tmp_path)))
    assert reader.has_new({})
    [batch] = list(reader.batches({}))
    assert batch.row_refs == ["a.eml"] and batch.table.num_rows == 1
    assert [(r.record, r.rule) for r in batch.rejects] == [
        ("notes.txt", "not_matching_pattern(*.eml)")
    ]
    assert not reader.has_new(batch.cursor) and not list(reader.batches(batch.cursor))

    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4")  # a stray alone still makes a batch
    assert reader.has_new(batch.cursor)
    [alone] = list(reader.batches(batch.cursor))
    assert alone.table.num_rows == 0 and alone.table.column_names == list(EMAIL_COLUMNS)
    assert [r.record for r in alone.rejects] == ["scan.pdf"]


def test_mail_delivered_while_the_folder_is_listed_is_read_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/realtime_latency.py: two listings per batch (mail, then everything) let a
    message renamed into the inbox between them count as "not matching the pattern"."""
    from aios_dagster.lib.connectors.files.listing import FileListing, seen_files
    from aios_dagster.lib.connectors.mailbox_source import MailboxReader, MailboxSourceConfig

    shutil.copy(FIXTURES / "digest.eml", tmp_path / "a.eml")
    reader = MailboxReader(MailboxSourceConfig(path=str(tmp_path)))
    listed = FileListing.new_files

    def then_mail_arrives(self: FileListing, cursor: dict | None) -> list:
        found = listed(self, cursor)
        if not (tmp_path / "late.eml").exists():
            shutil.copy(FIXTURES / "digest.eml", tmp_path / ".late.eml.part")
            (tmp_path / ".late.eml.part").replace(tmp_path / "late.eml")
        return found

    monkeypatch.setattr(FileListing, "new_files", then_mail_arrives)
    batches = list(reader.batches({}))
    monkeypatch.undo()
    assert [r.record for b in batches for r in b.rejects] == []
    assert [ref for b in batches for ref in b.row_refs or []] == ["a.eml"]
    cursor = batches[-1].cursor
    assert "late.eml" not in seen_files(cursor)  # not marked: the next read takes it
    [later] = list(reader.batches(cursor))
    assert later.row_refs == ["late.eml"] and not later.rejects
