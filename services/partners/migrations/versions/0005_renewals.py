"""partners: renewals and expiry: the notices published per contract period

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contract_notices',
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('expiring', 'expired', 'renewed')", name='ck_contract_notices_kind'),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contract_id', 'version', 'kind')
    )
    with op.batch_alter_table('contract_terms', schema=None) as batch_op:
        batch_op.create_index('ix_contract_terms_effective_to', ['effective_to'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('contract_terms', schema=None) as batch_op:
        batch_op.drop_index('ix_contract_terms_effective_to')
    op.drop_table('contract_notices')
