"""members: the frozen state is read from frozen_contacts, no longer copied onto each membership

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_members = sa.table('members', sa.column('seq', sa.BigInteger()), sa.column('contact_id', sa.Uuid()),
                    sa.column('frozen_at', sa.DateTime(timezone=True)), sa.column('frozen_reason', sa.String(500)))
_frozen = sa.table('frozen_contacts', sa.column('contact_id', sa.Uuid()),
                   sa.column('frozen_at', sa.DateTime(timezone=True)), sa.column('reason', sa.String(500)))


def upgrade() -> None:
    # A membership frozen today stays frozen: its contact gets a record when it has none (the membership's own
    # freeze, the earliest of the contact's). Every freeze wrote the record first, so this only catches a copy
    # that outlived its record.
    conn = op.get_bind()
    recorded = sa.select(_frozen.c.contact_id).where(_frozen.c.contact_id == _members.c.contact_id).exists()
    rows = conn.execute(sa.select(_members.c.contact_id, _members.c.frozen_at, _members.c.frozen_reason)
                        .where(_members.c.frozen_at.isnot(None), ~recorded)
                        .order_by(_members.c.contact_id, _members.c.frozen_at, _members.c.seq)).all()
    earliest = {}
    for contact_id, frozen_at, reason in rows:
        earliest.setdefault(contact_id, {"contact_id": contact_id, "frozen_at": frozen_at, "reason": reason})
    if earliest:
        op.bulk_insert(_frozen, list(earliest.values()))
    with op.batch_alter_table('members') as batch:
        batch.drop_column('frozen_reason')
        batch.drop_column('frozen_at')


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('frozen_reason', sa.String(length=500), nullable=True))
    record = sa.select(_frozen).where(_frozen.c.contact_id == _members.c.contact_id)
    op.execute(_members.update().where(record.exists())
               .values(frozen_at=record.with_only_columns(_frozen.c.frozen_at).scalar_subquery(),
                       frozen_reason=record.with_only_columns(_frozen.c.reason).scalar_subquery()))
