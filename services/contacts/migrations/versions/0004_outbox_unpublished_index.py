"""outbox: a partial index of the unpublished rows for the relay's claim, instead of an index of published_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from services.common.migrations import index_unpublished_outbox, unindex_unpublished_outbox

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_unpublished_outbox()


def downgrade() -> None:
    unindex_unpublished_outbox()
