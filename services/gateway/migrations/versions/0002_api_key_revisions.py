"""api key revisions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The one-row counter every revocation bumps, so each gateway process's key cache notices a revocation on the
next request (services/gateway/keys.py, KeyCache). The row is created here, starting at 0.
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    revisions = op.create_table('api_key_revisions',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_api_key_revisions_one_row'),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(revisions, [{'id': 1, 'version': 0}])


def downgrade() -> None:
    op.drop_table('api_key_revisions')
