"""contacts: CSV imports and their row errors (helper D)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument, SeqType, UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'contact_imports',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('status', sa.String(10), nullable=False),
        sa.Column('mapping', JsonDocument, nullable=False),
        sa.Column('total_rows', sa.Integer(), nullable=False),
        sa.Column('processed', sa.Integer(), nullable=False),
        sa.Column('created', sa.Integer(), nullable=False),
        sa.Column('updated', sa.Integer(), nullable=False),
        sa.Column('unchanged', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(500), nullable=True),
        sa.Column('requested_by', sa.String(200), nullable=False),
        sa.Column('correlation_id', sa.String(128), nullable=True),
        sa.Column('lease_owner', sa.String(64), nullable=True),
        sa.Column('lease_until', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('id'),
    )
    op.create_index('ix_contact_imports_status', 'contact_imports', ['status', 'seq'])
    op.create_table(
        'contact_import_files',
        sa.Column('import_id', sa.Uuid(), primary_key=True),
        sa.Column('content', sa.Text(), nullable=False),
    )
    op.create_table(
        'contact_import_errors',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('import_id', sa.Uuid(), nullable=False),
        sa.Column('row', sa.Integer(), nullable=False),
        sa.Column('field', sa.String(120), nullable=True),
        sa.Column('message', sa.String(500), nullable=False),
    )
    op.create_index('ix_contact_import_errors_import', 'contact_import_errors', ['import_id', 'seq'])


def downgrade() -> None:
    op.drop_table('contact_import_errors')
    op.drop_table('contact_import_files')
    op.drop_table('contact_imports')
