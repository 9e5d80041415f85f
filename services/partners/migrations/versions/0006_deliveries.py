"""partners: deliveries (scorecards are computed from them)

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


def upgrade() -> None:
    op.create_table('deliveries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=True),
    sa.Column('order_reference', sa.String(length=100), nullable=False),
    sa.Column('promised_on', sa.Date(), nullable=False),
    sa.Column('delivered_on', sa.Date(), nullable=True),
    sa.Column('quantity_ordered', sa.Numeric(precision=15, scale=3), nullable=False),
    sa.Column('quantity_delivered', sa.Numeric(precision=15, scale=3), nullable=False),
    sa.Column('quantity_rejected', sa.Numeric(precision=15, scale=3), nullable=False),
    sa.Column('amount', sa.Numeric(precision=15, scale=2), nullable=False),
    sa.Column('agreed_amount', sa.Numeric(precision=15, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('quantity_ordered > 0', name='ck_deliveries_ordered'),
    sa.CheckConstraint('quantity_delivered >= 0 AND quantity_delivered <= quantity_ordered',
                       name='ck_deliveries_delivered'),
    sa.CheckConstraint('quantity_rejected >= 0 AND quantity_rejected <= quantity_delivered',
                       name='ck_deliveries_rejected'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id'),
    sa.UniqueConstraint('partner_id', 'order_reference', name='uq_deliveries_partner_order')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_partner_promised', ['partner_id', 'promised_on'], unique=False)
        batch_op.create_index('ix_deliveries_partner_seq', ['partner_id', 'seq'], unique=False)
        # The risk assessment's spend share reads every partner's deliveries of the last twelve months.
        batch_op.create_index('ix_deliveries_delivered_on', ['delivered_on'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_delivered_on')
        batch_op.drop_index('ix_deliveries_partner_seq')
        batch_op.drop_index('ix_deliveries_partner_promised')
    op.drop_table('deliveries')
