"""contacts: the purchase fact table (margin, discount), returns, and the returns, margins and discounts in the totals

The `Money` column type is spelt out as in 0002: NUMERIC(18, 4), a decimal string on SQLite.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=18, scale=4).with_variant(sa.String(length=40), 'sqlite')
TOTALS = ('returned', 'margin', 'discount')


def upgrade() -> None:
    with op.batch_alter_table('contact_purchases') as batch:
        batch.add_column(sa.Column('margin', MONEY, nullable=True))
        batch.add_column(sa.Column('discount', MONEY, nullable=True))
    with op.batch_alter_table('contact_purchase_metrics') as batch:
        for name in TOTALS:
            batch.add_column(sa.Column(name, MONEY, nullable=False, server_default='0'))
    # The defaults only filled the existing rows; new rows get theirs from the model.
    with op.batch_alter_table('contact_purchase_metrics') as batch:
        for name in TOTALS:
            batch.alter_column(name, server_default=None)
    op.create_table(
        'contact_returns',
        sa.Column('return_id', sa.Uuid(), nullable=False),
        sa.Column('purchase_id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('amount', MONEY, nullable=False),
        sa.Column('margin', MONEY, nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('event_id', sa.Uuid(), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('return_id'),
    )
    op.create_index('ix_contact_returns_purchase_id', 'contact_returns', ['purchase_id'])
    op.create_index('ix_contact_returns_contact_id', 'contact_returns', ['contact_id'])


def downgrade() -> None:
    op.drop_index('ix_contact_returns_contact_id', 'contact_returns')
    op.drop_index('ix_contact_returns_purchase_id', 'contact_returns')
    op.drop_table('contact_returns')
    with op.batch_alter_table('contact_purchase_metrics') as batch:
        for name in reversed(TOTALS):
            batch.drop_column(name)
    with op.batch_alter_table('contact_purchases') as batch:
        batch.drop_column('discount')
        batch.drop_column('margin')
