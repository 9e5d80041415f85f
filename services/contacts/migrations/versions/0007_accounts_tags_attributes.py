"""contacts: accounts, account tags, custom attribute definitions (helper A)

Accounts are matched to contacts by e-mail domain: on PostgreSQL a partial expression index finds the contacts
without an account by their address's domain (`split_part(email_normalized, '@', -1)`, as
services/contacts/dialects.py writes it), so a new account's domain takes its contacts in without reading
the rest. SQLite has no such index (nor `split_part`) and scans.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument, SeqType, UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'accounts',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('domain', sa.String(253), nullable=True),
        sa.Column('industry', sa.String(100), nullable=True),
        sa.Column('size_band', sa.String(10), nullable=True),
        sa.Column('street', sa.String(200), nullable=True),
        sa.Column('city', sa.String(100), nullable=True),
        sa.Column('postal_code', sa.String(20), nullable=True),
        sa.Column('region', sa.String(100), nullable=True),
        sa.Column('country', sa.String(2), nullable=True),
        sa.Column('owner', sa.String(100), nullable=True),
        sa.Column('tags', JsonDocument, nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.UniqueConstraint('id'),
    )
    op.create_index('uq_accounts_domain', 'accounts', ['domain'], unique=True)
    op.create_index('ix_accounts_tags', 'accounts', ['tags'], postgresql_using='gin')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE INDEX ix_contacts_unassigned_domain ON contacts (split_part(email_normalized, '@', -1))"
                   " WHERE account_id IS NULL")

    op.create_table(
        'attribute_definitions',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('name', sa.String(40), nullable=False),
        sa.Column('type', sa.String(10), nullable=False),
        sa.Column('label', sa.String(100), nullable=False),
        sa.Column('description', sa.String(500), nullable=True),
        sa.Column('options', JsonDocument, nullable=False),
        sa.Column('max_length', sa.Integer(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('attribute_definitions')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_contacts_unassigned_domain', 'contacts')
    op.drop_index('ix_accounts_tags', 'accounts')
    op.drop_index('uq_accounts_domain', 'accounts')
    op.drop_table('accounts')
