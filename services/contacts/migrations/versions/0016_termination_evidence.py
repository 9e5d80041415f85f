"""contacts: payments, fraud flags, contact status and purchase coupon codes (termination evidence)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import SeqType as SEQ, UTCDateTime

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=18, scale=4).with_variant(sa.String(length=40), 'sqlite')
_STATUS_CHECK = ("(status = 'active' AND terminated_at IS NULL)"
                 " OR (status = 'terminated' AND terminated_at IS NOT NULL)")
_CLEARED_CHECK = ("(cleared_at IS NULL AND cleared_by IS NULL AND clear_reason IS NULL)"
                  " OR (cleared_at IS NOT NULL AND cleared_by IS NOT NULL AND clear_reason IS NOT NULL)")


def upgrade() -> None:
    # Every existing contact is active; the server default stays, so a bulk insert that names no status is too.
    with op.batch_alter_table('contacts') as batch:
        batch.add_column(sa.Column('status', sa.String(12), nullable=False, server_default='active'))
        batch.add_column(sa.Column('terminated_at', UTCDateTime(), nullable=True))
        batch.create_check_constraint('ck_contacts_status', _STATUS_CHECK)
    with op.batch_alter_table('contact_purchases') as batch:
        batch.add_column(sa.Column('coupon_code', sa.String(64), nullable=True))
    op.create_table(
        'contact_payments',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('invoice_reference', sa.String(100), nullable=False),
        sa.Column('amount', MONEY, nullable=False),
        sa.Column('currency', sa.String(3), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('paid_on', sa.Date(), nullable=True),
        sa.Column('recorded_by', sa.String(200), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.UniqueConstraint('contact_id', 'invoice_reference', name='uq_contact_payments_invoice'),
        sa.CheckConstraint('amount > 0', name='ck_contact_payments_amount'),
    )
    op.create_index('ix_contact_payments_contact_due', 'contact_payments', ['contact_id', 'due_on'])
    op.create_table(
        'contact_fraud_flags',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('code', sa.String(50), nullable=False),
        sa.Column('reason', sa.String(1000), nullable=False),
        sa.Column('flagged_by', sa.String(200), nullable=False),
        sa.Column('flagged_at', UTCDateTime(), nullable=False),
        sa.Column('cleared_at', UTCDateTime(), nullable=True),
        sa.Column('cleared_by', sa.String(200), nullable=True),
        sa.Column('clear_reason', sa.String(1000), nullable=True),
        sa.CheckConstraint(_CLEARED_CHECK, name='ck_contact_fraud_flags_cleared'),
    )
    op.create_index('ix_contact_fraud_flags_contact', 'contact_fraud_flags', ['contact_id', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_contact_fraud_flags_contact', 'contact_fraud_flags')
    op.drop_table('contact_fraud_flags')
    op.drop_index('ix_contact_payments_contact_due', 'contact_payments')
    op.drop_table('contact_payments')
    with op.batch_alter_table('contact_purchases') as batch:
        batch.drop_column('coupon_code')
    with op.batch_alter_table('contacts') as batch:
        batch.drop_constraint('ck_contacts_status', type_='check')
        batch.drop_column('terminated_at')
        batch.drop_column('status')
