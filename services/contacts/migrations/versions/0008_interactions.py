"""contacts: interactions and complaints (helper B)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import SeqType, UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'interactions',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('type', sa.String(20), nullable=False),
        sa.Column('channel', sa.String(20), nullable=True),
        sa.Column('direction', sa.String(10), nullable=True),
        sa.Column('occurred_at', UTCDateTime(), nullable=False),
        sa.Column('summary', sa.String(2000), nullable=False),
        sa.Column('outcome', sa.String(500), nullable=True),
        sa.Column('recorded_by', sa.String(200), nullable=False),
        sa.Column('category', sa.String(20), nullable=True),
        sa.Column('status', sa.String(10), nullable=True),
        sa.Column('resolution', sa.String(2000), nullable=True),
        sa.Column('resolved_at', UTCDateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(200), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.UniqueConstraint('id'),
        sa.CheckConstraint("(type = 'complaint' AND category IS NOT NULL AND status IN ('open', 'resolved')"
                           " AND (status = 'resolved') = (resolved_at IS NOT NULL))"
                           " OR (type <> 'complaint' AND category IS NULL AND status IS NULL AND resolution IS NULL"
                           " AND resolved_at IS NULL AND resolved_by IS NULL)", name='ck_interactions_complaint'),
    )
    op.create_index('ix_interactions_contact', 'interactions', ['contact_id', 'occurred_at', 'seq'])
    op.create_index('ix_interactions_complaint_status', 'interactions', ['status', 'contact_id'])


def downgrade() -> None:
    op.drop_table('interactions')
