"""contacts: erasure requests and the services' confirmations (helper F)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument, SeqType, UTCDateTime

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'erasures',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('status', sa.String(10), nullable=False),
        sa.Column('erased', JsonDocument, nullable=False),
        sa.Column('expected_services', JsonDocument, nullable=True),
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('requested_by', sa.String(200), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('completed_at', UTCDateTime(), nullable=True),
        sa.UniqueConstraint('id'),
        sa.UniqueConstraint('contact_id'),
    )
    op.create_table(
        'erasure_confirmations',
        sa.Column('erasure_id', sa.Uuid(), primary_key=True),
        sa.Column('service', sa.String(40), primary_key=True),
        sa.Column('confirmed_at', UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('erasure_confirmations')
    op.drop_table('erasures')
