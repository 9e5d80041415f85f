"""contacts: payments, fraud flags, contact status and purchase coupon codes (termination evidence)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled in by the termination work


def downgrade() -> None:
    pass
