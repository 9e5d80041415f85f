"""A contact as a vCard 4.0 (RFC 6350): FN, N, EMAIL, TEL, ORG, TITLE, UID and REV.

Text values are escaped (§3.4: backslash, comma, semicolon, newline) and content lines are folded at 75 octets
(§3.2) without splitting a UTF-8 character; lines end with CRLF.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone

MEDIA_TYPE = "text/vcard"
LINE_OCTETS = 75
_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", ";": "\\;", "\n": "\\n", "\r": ""})


def wanted(accept) -> bool:
    """True when a request's Accept header (werkzeug MIMEAccept) prefers a vCard to JSON, the default."""
    return accept.best_match(["application/json", MEDIA_TYPE]) == MEDIA_TYPE


def escape(value: str | None) -> str:
    """A text value (or one component of a structured value) escaped for a content line."""
    return (value or "").translate(_ESCAPES)


def fold(line: str) -> str:
    """A content line folded into lines of at most 75 octets: CRLF and one space before each continuation."""
    encoded = line.encode("utf-8")
    if len(encoded) <= LINE_OCTETS:
        return line
    pieces, start, limit = [], 0, LINE_OCTETS
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start, limit = end, LINE_OCTETS - 1  # a continuation line spends one octet on its leading space
    return "\r\n ".join(pieces)


def formatted_name(contact: Mapping) -> str:
    """FN, which a vCard must have: the person's name, else the company, else the e-mail address."""
    name = " ".join(part for part in (contact.get("first_name"), contact.get("last_name")) if part)
    return name or contact.get("company") or contact["email"]


def vcard(contact: Mapping) -> str:
    """The vCard 4.0 text of a contact (its fields as the contact's GET returns them)."""
    lines = ["BEGIN:VCARD", "VERSION:4.0", "PRODID:-//CRM Suite//Contacts//EN", f"UID:urn:uuid:{contact['id']}",
             "FN:" + escape(formatted_name(contact)),
             # family; given; additional; prefixes; suffixes
             f"N:{escape(contact.get('last_name'))};{escape(contact.get('first_name'))};;;",
             "EMAIL:" + escape(contact["email"])]
    if contact.get("phone"):
        # The stored number may hold spaces, which a tel: URI may not; as text it is passed on unchanged.
        lines.append("TEL;VALUE=text:" + escape(contact["phone"]))
    if contact.get("company"):
        lines.append("ORG:" + escape(contact["company"]))
    if contact.get("job_title"):
        lines.append("TITLE:" + escape(contact["job_title"]))
    revised = contact["updated_at"].astimezone(timezone.utc)
    lines += [f"REV:{revised:%Y%m%dT%H%M%SZ}", "END:VCARD"]
    return "".join(fold(line) + "\r\n" for line in lines)
