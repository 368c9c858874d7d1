"""Mailbox parsing: headers, threads, HTML-only bodies, attachments, and broken files."""

from email.message import EmailMessage
from pathlib import Path

from aios_dagster.lib.connectors.mailbox import parse_eml, read_mailbox


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
