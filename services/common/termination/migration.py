"""The termination tables' migration step, shared by the contacts (0017) and partners (0008) migrations.

Written out column by column rather than derived from models.py, so a later change to the models never alters
what this migration built; tests/integration/common/test_migrations.py checks both still agree.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import JsonDocument as JSON, SeqType as SEQ, UTCDateTime

OPEN = sa.text("status = 'open'")
TABLES = ("termination_decisions", "termination_recommendations", "termination_run_findings",
          "termination_run_subjects", "termination_runs", "termination_policies")


def create_termination_tables() -> None:
    """Create the policy, run, run subject, run finding, recommendation and decision tables and their indexes."""
    op.create_table(
        'termination_policies',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('code', sa.String(64), nullable=False, unique=True),
        sa.Column('plugin', sa.String(200), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('description', sa.String(2000), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('parameters', JSON, nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
    )
    op.create_table(
        'termination_runs',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('mode', sa.String(12), nullable=False),
        sa.Column('status', sa.String(12), nullable=False),
        sa.Column('trigger', sa.String(10), nullable=False),
        sa.Column('requested_by', sa.String(200), nullable=False),
        sa.Column('policies', JSON, nullable=False),
        sa.Column('window_days', sa.Integer(), nullable=False),
        sa.Column('as_of', UTCDateTime(), nullable=False),
        sa.Column('schedule_slot', sa.BigInteger(), nullable=True),
        sa.Column('subjects_seen', sa.Integer(), nullable=False),
        sa.Column('subjects_flagged', sa.Integer(), nullable=False),
        sa.Column('subjects_degraded', sa.Integer(), nullable=False),
        sa.Column('batches', sa.Integer(), nullable=False),
        sa.Column('last_seq', sa.BigInteger(), nullable=True),
        sa.Column('counts', JSON, nullable=False),
        sa.Column('timings', JSON, nullable=False),
        sa.Column('error', sa.String(500), nullable=True),
        sa.Column('lease_owner', sa.String(64), nullable=True),
        sa.Column('lease_until', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.UniqueConstraint('mode', 'schedule_slot', name='uq_termination_runs_slot'),
    )
    op.create_index('ix_termination_runs_status', 'termination_runs', ['status', 'seq'])
    op.create_index('ix_termination_runs_mode', 'termination_runs', ['mode', 'seq'])
    op.create_table(
        'termination_run_subjects',
        sa.Column('run_id', sa.Uuid(), primary_key=True),
        sa.Column('subject_seq', sa.BigInteger(), primary_key=True),
        sa.Column('subject_id', sa.Uuid(), nullable=False),
        sa.Column('severity', sa.String(10), nullable=False),
        sa.Column('strategy', sa.String(12), nullable=False),
        sa.Column('findings', JSON, nullable=False),
        sa.Column('degraded', JSON, nullable=False),
    )
    op.create_index('ix_termination_run_subjects_subject', 'termination_run_subjects', ['run_id', 'subject_id'])
    op.create_table(
        'termination_run_findings',
        sa.Column('run_id', sa.Uuid(), primary_key=True),
        sa.Column('subject_seq', sa.BigInteger(), primary_key=True),
        sa.Column('code', sa.String(64), primary_key=True),
    )
    op.create_index('ix_termination_run_findings_code', 'termination_run_findings',
                    ['run_id', 'code', 'subject_seq'])
    op.create_table(
        'termination_recommendations',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('subject_id', sa.Uuid(), nullable=False),
        sa.Column('status', sa.String(12), nullable=False),
        sa.Column('severity', sa.String(10), nullable=False),
        sa.Column('strategy', sa.String(12), nullable=False),
        sa.Column('findings', JSON, nullable=False),
        sa.Column('fingerprint', sa.String(64), nullable=False),
        sa.Column('run_id', sa.Uuid(), nullable=True),
        sa.Column('superseded_by', sa.Uuid(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('evidence_at', UTCDateTime(), nullable=False),
        sa.Column('closed_at', UTCDateTime(), nullable=True),
    )
    op.create_index('uq_termination_recommendations_open', 'termination_recommendations', ['subject_id'],
                    unique=True, postgresql_where=OPEN, sqlite_where=OPEN)
    op.create_index('ix_termination_recommendations_subject', 'termination_recommendations',
                    ['subject_id', 'status', 'closed_at'])
    op.create_index('ix_termination_recommendations_status', 'termination_recommendations', ['status', 'seq'])
    op.create_table(
        'termination_decisions',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('recommendation_id', sa.Uuid(), nullable=False, unique=True),
        sa.Column('subject_id', sa.Uuid(), nullable=False),
        sa.Column('decision', sa.String(10), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('severity', sa.String(10), nullable=False),
        sa.Column('strategy', sa.String(12), nullable=False),
        sa.Column('findings', JSON, nullable=False),
        sa.Column('effect', sa.String(40), nullable=False),
        sa.Column('decided_by', sa.String(200), nullable=False),
        sa.Column('decided_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_termination_decisions_subject', 'termination_decisions', ['subject_id', 'seq'])


def drop_termination_tables() -> None:
    """The downgrade of `create_termination_tables`."""
    for table in TABLES:
        op.drop_table(table)
