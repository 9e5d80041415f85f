"""contacts: analytics snapshots (one refresh row, one customer_analytics row per contact) and current stages

Money in these tables is BIGINT units of 1/10,000 (see models.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument as JSON, SeqType as SEQ, UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'analytics_refreshes',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('status', sa.String(12), nullable=False),
        sa.Column('trigger', sa.String(10), nullable=False),
        sa.Column('currency', sa.String(3), nullable=False),
        sa.Column('as_of', UTCDateTime(), nullable=False),
        sa.Column('parameters', JSON, nullable=False),
        sa.Column('schedule_slot', sa.BigInteger(), nullable=True),
        sa.Column('step', sa.String(20), nullable=True),
        sa.Column('steps_done', sa.Integer(), nullable=False),
        sa.Column('steps_total', sa.Integer(), nullable=False),
        sa.Column('customers', sa.Integer(), nullable=True),
        sa.Column('summary', JSON, nullable=False),
        sa.Column('timings', JSON, nullable=False),
        sa.Column('error', sa.String(500), nullable=True),
        sa.Column('requested_by', sa.String(200), nullable=False),
        sa.Column('lease_owner', sa.String(64), nullable=True),
        sa.Column('lease_until', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('currency', 'schedule_slot', name='uq_analytics_refreshes_slot'),
    )
    op.create_index('ix_analytics_refreshes_current', 'analytics_refreshes', ['currency', 'status', 'seq'])
    op.create_index('ix_analytics_refreshes_status', 'analytics_refreshes', ['status', 'seq'])
    op.create_index('uq_analytics_refreshes_running', 'analytics_refreshes', ['currency'], unique=True,
                    postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))
    units = [sa.Column(name, sa.BigInteger(), nullable=False) for name in (
        'revenue_window_units', 'margin_window_units', 'cost_window_units',
        'revenue_total_units', 'margin_total_units', 'cost_total_units')]
    op.create_table(
        'customer_analytics',
        sa.Column('refresh_id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('purchases_window', sa.Integer(), nullable=False),
        sa.Column('purchase_count', sa.Integer(), nullable=False),
        *units,
        sa.Column('first_purchase_at', UTCDateTime(), nullable=True),
        sa.Column('last_purchase_at', UTCDateTime(), nullable=True),
        sa.Column('purchases_all_currencies', sa.Integer(), nullable=False),
        sa.Column('last_purchase_any_at', UTCDateTime(), nullable=True),
        sa.Column('purchases_year_before', sa.Integer(), nullable=False),
        sa.Column('purchases_last_year', sa.Integer(), nullable=False),
        sa.Column('abc_class', sa.String(1), nullable=True),
        sa.Column('abc_rank', sa.Integer(), nullable=True),
        sa.Column('abc_cumulative_units', sa.BigInteger(), nullable=True),
        sa.Column('recency_score', sa.SmallInteger(), nullable=True),
        sa.Column('frequency_score', sa.SmallInteger(), nullable=True),
        sa.Column('monetary_score', sa.SmallInteger(), nullable=True),
        sa.Column('rfm_segment', sa.String(20), nullable=True),
        sa.Column('predicted_margin_units', sa.BigInteger(), nullable=True),
        sa.Column('clv_units', sa.BigInteger(), nullable=True),
        sa.Column('current_profit_units', sa.BigInteger(), nullable=True),
        sa.Column('quadrant', sa.String(10), nullable=True),
        sa.Column('pyramid_level', sa.String(10), nullable=True),
        sa.Column('stage', sa.String(10), nullable=True),
        sa.Column('stage_source', sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint('refresh_id', 'contact_id'),
        postgresql_with={'fillfactor': 50},  # room for HOT updates: each measure pass rewrites every row
    )
    op.create_index('ix_customer_analytics_contact', 'customer_analytics', ['contact_id'])
    op.create_table(
        'contact_stages',
        sa.Column('contact_id', sa.Uuid(), primary_key=True),
        sa.Column('stage', sa.String(10), nullable=False),
        sa.Column('previous_stage', sa.String(10), nullable=True),
        sa.Column('source', sa.String(100), nullable=False),
        sa.Column('refresh_id', sa.Uuid(), nullable=False),
        sa.Column('changed_at', UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('contact_stages')
    op.drop_index('ix_customer_analytics_contact', 'customer_analytics')
    op.drop_table('customer_analytics')
    op.drop_index('uq_analytics_refreshes_running', 'analytics_refreshes')
    op.drop_index('ix_analytics_refreshes_status', 'analytics_refreshes')
    op.drop_index('ix_analytics_refreshes_current', 'analytics_refreshes')
    op.drop_table('analytics_refreshes')
