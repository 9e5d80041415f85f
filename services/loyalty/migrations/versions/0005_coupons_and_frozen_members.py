"""loyalty: coupon codes on purchases, frozen memberships (terminated customers) and the contacts they froze

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('purchases') as batch:
        batch.add_column(sa.Column('coupon_code', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('frozen', sa.Boolean(), nullable=False, server_default=sa.false()))
    # The default only filled the existing rows; new rows get theirs from the model.
    with op.batch_alter_table('purchases') as batch:
        batch.alter_column('frozen', server_default=None)
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('frozen_reason', sa.String(length=500), nullable=True))
    op.create_table(
        'frozen_contacts',
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.Column('recommendation_id', sa.Uuid(), nullable=True),
        sa.Column('decision_id', sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint('contact_id'),
    )


def downgrade() -> None:
    op.drop_table('frozen_contacts')
    with op.batch_alter_table('members') as batch:
        batch.drop_column('frozen_reason')
        batch.drop_column('frozen_at')
    with op.batch_alter_table('purchases') as batch:
        batch.drop_column('frozen')
        batch.drop_column('coupon_code')
