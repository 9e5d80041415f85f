"""contacts: consent history and survey answers (helper C)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import SeqType, UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'consent_changes',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('channel', sa.String(10), nullable=False),
        sa.Column('purpose', sa.String(10), nullable=False),
        sa.Column('status', sa.String(10), nullable=False),
        sa.Column('occurred_at', UTCDateTime(), nullable=False),
        sa.Column('source', sa.String(100), nullable=False),
        sa.Column('text_version', sa.String(50), nullable=True),
        sa.Column('current', sa.Boolean(), nullable=False),
        sa.Column('recorded_by', sa.String(200), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('id'),
        sa.CheckConstraint("status IN ('granted', 'withdrawn')", name='ck_consent_changes_status'),
    )
    op.create_index('ix_consent_changes_contact', 'consent_changes', ['contact_id', 'seq'])
    op.create_table(
        'feedback',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sa.String(10), nullable=False),
        sa.Column('score', sa.SmallInteger(), nullable=False),
        sa.Column('comment', sa.String(2000), nullable=True),
        sa.Column('interaction_id', sa.Uuid(), nullable=True),
        sa.Column('purchase_id', sa.Uuid(), nullable=True),
        sa.Column('occurred_at', UTCDateTime(), nullable=False),
        sa.Column('survey', sa.String(100), nullable=True),
        sa.Column('channel', sa.String(100), nullable=True),
        sa.Column('recorded_by', sa.String(200), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('id'),
        sa.CheckConstraint("(kind = 'nps' AND score BETWEEN 0 AND 10 AND interaction_id IS NULL AND purchase_id IS NULL)"
                           " OR (kind = 'csat' AND score BETWEEN 1 AND 5"
                           " AND (interaction_id IS NULL) <> (purchase_id IS NULL))", name='ck_feedback_kind'),
    )
    op.create_index('ix_feedback_contact', 'feedback', ['contact_id', 'seq'])
    op.create_index('ix_feedback_occurred_at', 'feedback', ['occurred_at'],
                    postgresql_include=['kind', 'score', 'contact_id'])


def downgrade() -> None:
    op.drop_table('feedback')
    op.drop_table('consent_changes')
