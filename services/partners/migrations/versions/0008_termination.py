"""partners: termination policies, runs, recommendations and decisions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""
from services.common.termination.migration import create_termination_tables, drop_termination_tables

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_termination_tables()


def downgrade() -> None:
    drop_termination_tables()
