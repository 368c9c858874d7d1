"""The readable text of one message: every inline text part, in order, even from broken MIME.

Real mail is not what the RFCs describe. Three shapes lost text before this module:

* a multipart message whose boundary is missing or is not the one its parts use: the parser
  leaves the whole body as one unsplit string, so no text part was ever found. The delimiter
  lines the sender actually wrote are found and the body is split on them; without any, the
  body is read as plain text;
* a digest (or any ``multipart/mixed``) holds several messages or text parts: each one is kept,
  not only the first;
* ``multipart/alternative`` holds the *same* text twice (plain and HTML): only one of them is
  kept, the plain one where there is one.

Attachment payloads are never decoded; only their names are listed.
"""

from __future__ import annotations

import email
import re
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser

# A MIME delimiter line: "--" and a boundary, "--" more on the closing one.
_DELIMITER = re.compile(r"(?m)^--(\S+?)(?:--)?[ \t]*\r?$")


class _TextExtractor(HTMLParser):
    """Minimal HTML-to-text: paragraph and line-break tags become newlines."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"p", "br", "div", "li", "tr"}:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()


def strip_nul(text: str) -> str:
    """NUL bytes carry no meaning in mail and break downstream text stores: drop them."""
    return text.replace("\x00", "")


@dataclass
class BodyParts:
    """What a message's parts hold, collected in order."""

    texts: list[str] = field(default_factory=list)
    plain: bool = False  # some text came from a text/plain part
    has_html: bool = False
    attachments: list[str] = field(default_factory=list)

    def extend(self, other: BodyParts) -> None:
        self.texts += other.texts
        self.plain = self.plain or other.plain
        self.has_html = self.has_html or other.has_html
        self.attachments += other.attachments

    @property
    def body(self) -> str | None:
        """The text parts joined by a blank line; None when the message had none."""
        if not self.texts:
            return None
        return "\n\n".join(t for t in (strip_nul(t).strip() for t in self.texts) if t)


def decode_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name: keep the text, flag nothing
        return payload.decode("utf-8", errors="replace")


def _leaf(part: Message, out: BodyParts) -> None:
    ctype = part.get_content_type()
    filename = part.get_filename()
    disposition = (part.get("Content-Disposition") or "").lower()
    is_text = ctype in ("text/plain", "text/html")
    if disposition.startswith("attachment") or (filename and not is_text):
        out.attachments.append(strip_nul(filename) if filename else "unnamed")
    elif ctype == "text/plain":
        out.texts.append(decode_text(part))
        out.plain = True
    elif ctype == "text/html":
        out.texts.append(html_to_text(decode_text(part)))
        out.has_html = True


def _types(part: Message) -> set[str]:
    return {p.get_content_type() for p in part.walk()}


def _alternative(children: list[Message], out: BodyParts) -> None:
    """One rendering of the same content: the first with plain text, else the first with any.

    Only the chosen rendering is decoded: converting an HTML twin nobody reads is wasted work.
    """
    types = [_types(child) for child in children]
    order = [c for c, t in zip(children, types, strict=True) if "text/plain" in t]
    order += [c for c in children if c not in order]
    for child in order:
        version = BodyParts()
        collect(child, version)
        if version.texts:
            out.extend(version)
            break
    out.has_html = out.has_html or any("text/html" in t for t in types)


def _unsplit(part: Message, out: BodyParts) -> None:
    """A multipart whose boundary did not split it: split on the delimiters really used."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return
    raw = payload.encode("ascii", "surrogateescape")  # 8-bit text stays as the sender's bytes
    found = Counter(_DELIMITER.findall(payload))
    if found:
        boundary = found.most_common(1)[0][0]
        header = f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'.encode()
        reparsed = email.message_from_bytes(header + raw)
        if reparsed.is_multipart():
            for child in reparsed.get_payload():
                collect(child, out)
            return
    charset = part.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    out.texts.append(text)
    out.plain = True


def collect(part: Message, out: BodyParts) -> None:
    """Add ``part``'s text, HTML flag and attachment names to ``out``, depth first."""
    ctype = part.get_content_type()
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            _alternative(children, out)
        else:  # mixed, digest, related, signed, an attached message/rfc822: every part counts
            for child in children:
                collect(child, out)
    elif ctype.startswith("multipart/"):
        _unsplit(part, out)
    else:
        _leaf(part, out)


def body_parts(msg: Message) -> BodyParts:
    out = BodyParts()
    collect(msg, out)
    return out
