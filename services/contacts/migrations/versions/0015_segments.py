"""contacts: saved segments and their members as of the last membership refresh

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument as JSON, SeqType as SEQ, UTCDateTime

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'segments',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('name', sa.String(100), nullable=False, unique=True),
        sa.Column('description', sa.String(1000), nullable=True),
        sa.Column('rules', JSON, nullable=False),
        sa.Column('currency', sa.String(3), nullable=False),
        sa.Column('member_count', sa.Integer(), nullable=True),
        sa.Column('members_refreshed_at', UTCDateTime(), nullable=True),
        sa.Column('created_by', sa.String(200), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
    )
    op.create_table(
        'segment_members',
        sa.Column('segment_id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
        sa.Column('entered_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('segment_id', 'contact_id'),
    )
    op.create_index('ix_segment_members_contact', 'segment_members', ['contact_id'])


def downgrade() -> None:
    op.drop_index('ix_segment_members_contact', 'segment_members')
    op.drop_table('segment_members')
    op.drop_table('segments')
