"""contacts: merges and the merged ids' tombstones (helper E)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument, UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'contact_merges',
        sa.Column('merged_id', sa.Uuid(), primary_key=True),
        sa.Column('survivor_id', sa.Uuid(), nullable=False),
        sa.Column('merged_at', UTCDateTime(), nullable=False),
        sa.Column('merged_by', sa.String(200), nullable=False),
        sa.Column('moved', JsonDocument, nullable=False),
        sa.Column('filled', JsonDocument, nullable=False),
    )
    op.create_index('ix_contact_merges_survivor_id', 'contact_merges', ['survivor_id'])


def downgrade() -> None:
    op.drop_table('contact_merges')
