"""partners: negotiation: proposals and their thread

At most one open proposal per contract is a partial unique index (`status = 'open'`), on PostgreSQL and SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument as JSON, SeqType as SEQ, UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_OPEN = "status = 'open'"


def upgrade() -> None:
    op.create_table(
        'proposals',
        sa.Column('seq', SEQ, autoincrement=True, nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('partner_id', sa.Uuid(), nullable=False),
        sa.Column('base_version', sa.Integer(), nullable=False),
        sa.Column('changes', JSON, nullable=False),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('proposed_by', sa.String(length=10), nullable=False),
        sa.Column('proposed_by_key', sa.String(length=200), nullable=True),
        sa.Column('supersedes_id', sa.Uuid(), nullable=True),
        sa.Column('decided_by_key', sa.String(length=200), nullable=True),
        sa.Column('decided_at', UTCDateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('terms_version', sa.Integer(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.CheckConstraint("proposed_by IN ('internal', 'partner')", name='ck_proposals_proposed_by'),
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['partner_id'], ['partners.id']),
        sa.ForeignKeyConstraint(['supersedes_id'], ['proposals.id']),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('id'),
    )
    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.create_index('uq_proposals_open_contract', ['contract_id'], unique=True,
                              postgresql_where=sa.text(_OPEN), sqlite_where=sa.text(_OPEN))
        batch_op.create_index('ix_proposals_contract_seq', ['contract_id', 'seq'], unique=False)
        batch_op.create_index('ix_proposals_status_expires_at', ['status', 'expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('proposals')
