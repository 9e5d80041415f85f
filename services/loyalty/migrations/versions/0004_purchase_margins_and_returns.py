"""loyalty: a purchase's margin and discount, a program's default margin rate, returns and their ledger kind

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=18, scale=4)
KINDS = "kind IN ('earn', 'redeem', 'adjust', 'reverse'{})"


def upgrade() -> None:
    with op.batch_alter_table('programs') as batch:
        batch.add_column(sa.Column('margin_rate', sa.Numeric(precision=5, scale=4), nullable=True))
    with op.batch_alter_table('purchases') as batch:
        batch.add_column(sa.Column('margin', MONEY, nullable=True))
        batch.add_column(sa.Column('discount', MONEY, nullable=True))
        batch.add_column(sa.Column('returned_amount', MONEY, nullable=False, server_default='0'))
        batch.add_column(sa.Column('returned_margin', MONEY, nullable=False, server_default='0'))
        batch.add_column(sa.Column('points_reclaimed', sa.BigInteger(), nullable=False, server_default='0'))
        batch.create_check_constraint('ck_purchases_margin_within_amount', 'margin >= 0 AND margin <= amount')
        batch.create_check_constraint('ck_purchases_discount_not_negative', 'discount >= 0')
        batch.create_check_constraint('ck_purchases_returned_within_amount',
                                      'returned_amount >= 0 AND returned_amount <= amount')
    # The defaults only filled the existing rows; new rows get theirs from the model.
    with op.batch_alter_table('purchases') as batch:
        for name in ('returned_amount', 'returned_margin', 'points_reclaimed'):
            batch.alter_column(name, server_default=None)
    with op.batch_alter_table('ledger_entries') as batch:
        batch.drop_constraint('ck_ledger_entries_kind', type_='check')
        batch.create_check_constraint('ck_ledger_entries_kind', KINDS.format(", 'return'"))
    op.create_table(
        'purchase_returns',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('purchase_id', sa.Uuid(), nullable=False),
        sa.Column('amount', MONEY, nullable=False),
        sa.Column('margin', MONEY, nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('points_unrecovered', sa.BigInteger(), nullable=False),
        sa.Column('transaction_id', sa.Uuid(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('amount > 0', name='ck_purchase_returns_amount_positive'),
        sa.CheckConstraint('margin >= 0 AND margin <= amount', name='ck_purchase_returns_margin_within_amount'),
        sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id']),
        sa.ForeignKeyConstraint(['transaction_id'], ['ledger_entries.id']),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('id'),
    )
    op.create_index('ix_purchase_returns_purchase_seq', 'purchase_returns', ['purchase_id', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_purchase_returns_purchase_seq', 'purchase_returns')
    op.drop_table('purchase_returns')
    # Entries of the new kind cannot stay under the old constraint: a return's take-back becomes an adjustment.
    op.execute("UPDATE ledger_entries SET kind = 'adjust' WHERE kind = 'return'")
    op.execute("UPDATE ledger_entries SET reversed_kind = 'adjust' WHERE reversed_kind = 'return'")
    with op.batch_alter_table('ledger_entries') as batch:
        batch.drop_constraint('ck_ledger_entries_kind', type_='check')
        batch.create_check_constraint('ck_ledger_entries_kind', KINDS.format(""))
    with op.batch_alter_table('purchases') as batch:
        for name in ('ck_purchases_returned_within_amount', 'ck_purchases_discount_not_negative',
                     'ck_purchases_margin_within_amount'):
            batch.drop_constraint(name, type_='check')
        for name in ('points_reclaimed', 'returned_margin', 'returned_amount', 'discount', 'margin'):
            batch.drop_column(name)
    with op.batch_alter_table('programs') as batch:
        batch.drop_column('margin_rate')
