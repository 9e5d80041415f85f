"""contacts: e-mail keys in NFKC with the domain in IDNA form, so look-alike spellings match (issue 7 §2)

Only rows whose address is not ASCII can change (ASCII keys are the same under both rules). A row whose new
key another contact already has keeps its old key and is logged: two contacts for one person, to be merged
by someone who can tell.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
import logging

from alembic import op

from services.common.emails import legacy_email_key, rekey_stored_emails

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    for line in rekey_stored_emails(op.get_bind(), "contacts"):
        log.warning("not re-keyed: %s", line)


def downgrade() -> None:
    for line in rekey_stored_emails(op.get_bind(), "contacts", key=legacy_email_key):
        log.warning("not re-keyed: %s", line)
