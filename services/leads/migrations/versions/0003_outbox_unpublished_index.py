"""outbox: a partial index of the unpublished rows for the relay's claim, instead of an index of published_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from services.common.migrations import index_unpublished_outbox, unindex_unpublished_outbox

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_unpublished_outbox()


def downgrade() -> None:
    unindex_unpublished_outbox()
