"""contacts: termination policies, runs, recommendations and decisions

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the termination work


def downgrade() -> None:
    pass
