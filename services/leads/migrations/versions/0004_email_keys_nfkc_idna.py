"""leads: e-mail keys in NFKC with the domain in IDNA form, so look-alike spellings match (issue 7 §2)

Only rows whose address is not ASCII can change. Open leads are unique per key: an open lead whose new key
another open lead already has keeps its old key and is logged (one person captured twice, under two
spellings). Closed leads (converting, converted, disqualified) are always re-keyed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
import logging

from alembic import op

from services.common.emails import legacy_email_key, rekey_stored_emails

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
# The scope of uq_leads_open_email, as it was when this migration was written.
OPEN = "status IN ('new', 'contacted', 'qualified')"


def upgrade() -> None:
    for line in rekey_stored_emails(op.get_bind(), "leads", unique_where=OPEN):
        log.warning("not re-keyed: %s", line)


def downgrade() -> None:
    for line in rekey_stored_emails(op.get_bind(), "leads", key=legacy_email_key, unique_where=OPEN):
        log.warning("not re-keyed: %s", line)
