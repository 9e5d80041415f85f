"""contacts: the customer record's columns (account, tags, attributes, consents) and the timeline projection

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument, SeqType, UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.add_column(sa.Column('account_id', sa.Uuid(), nullable=True))
        batch.add_column(sa.Column('tags', JsonDocument, nullable=False, server_default='[]'))
        batch.add_column(sa.Column('attributes', JsonDocument, nullable=False, server_default='{}'))
        batch.add_column(sa.Column('consents', JsonDocument, nullable=False, server_default='{}'))
    # The defaults only filled the existing rows; new rows get theirs from the model.
    with op.batch_alter_table('contacts') as batch:
        for name in ('tags', 'attributes', 'consents'):
            batch.alter_column(name, server_default=None)
    op.create_index('ix_contacts_account_id', 'contacts', ['account_id'])
    op.create_index('ix_contacts_tags', 'contacts', ['tags'], postgresql_using='gin')
    op.create_index('ix_contacts_attributes', 'contacts', ['attributes'], postgresql_using='gin')

    op.create_table(
        'timeline_entries',
        sa.Column('seq', SeqType, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contact_id', sa.Uuid(), nullable=True),
        sa.Column('lead_id', sa.Uuid(), nullable=True),
        sa.Column('kind', sa.String(40), nullable=False),
        sa.Column('occurred_at', UTCDateTime(), nullable=False),
        sa.Column('summary', sa.String(500), nullable=True),
        sa.Column('data', JsonDocument, nullable=False),
        sa.Column('source', sa.String(40), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('id'),
    )
    op.create_index('ix_timeline_contact', 'timeline_entries', ['contact_id', 'occurred_at', 'seq'])
    op.create_index('ix_timeline_lead', 'timeline_entries', ['lead_id', 'occurred_at', 'seq'])
    op.create_table(
        'contact_leads',
        sa.Column('lead_id', sa.Uuid(), primary_key=True),
        sa.Column('contact_id', sa.Uuid(), nullable=False),
    )
    op.create_index('ix_contact_leads_contact_id', 'contact_leads', ['contact_id'])


def downgrade() -> None:
    op.drop_table('contact_leads')
    op.drop_table('timeline_entries')
    op.drop_index('ix_contacts_attributes', 'contacts')
    op.drop_index('ix_contacts_tags', 'contacts')
    op.drop_index('ix_contacts_account_id', 'contacts')
    with op.batch_alter_table('contacts') as batch:
        for name in ('consents', 'attributes', 'tags', 'account_id'):
            batch.drop_column(name)
