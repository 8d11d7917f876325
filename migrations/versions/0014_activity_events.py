"""activity: seen CloudTrail events and risky changes

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_WHEN = bot.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table('activity_seen',
    sa.Column('event_id', _TEXT(length=128), nullable=False),
    sa.Column('account_id', _TEXT(length=12), nullable=False),
    sa.Column('seen_at', _WHEN(timezone=True), nullable=False),
    sa.Column('risky', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('activity_seen', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activity_seen_seen_at'), ['seen_at'], unique=False)
    op.create_table('activity_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', _TEXT(length=128), nullable=False),
    sa.Column('token', _TEXT(length=32), nullable=False),
    sa.Column('account_id', _TEXT(length=12), nullable=False),
    sa.Column('rule_id', _TEXT(length=64), nullable=False),
    sa.Column('severity', _TEXT(length=10), nullable=False),
    sa.Column('summary', _TEXT(length=1000), nullable=False),
    sa.Column('target', _TEXT(length=2048), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('containment', sa.JSON(), nullable=False),
    sa.Column('actor_arn', _TEXT(length=2048), nullable=False),
    sa.Column('actor_kind', _TEXT(length=20), nullable=False),
    sa.Column('person', _TEXT(length=32), nullable=True),
    sa.Column('state', _TEXT(length=20), nullable=False),
    sa.Column('event_time', _WHEN(timezone=True), nullable=False),
    sa.Column('received_at', _WHEN(timezone=True), nullable=False),
    sa.Column('answer_due', _WHEN(timezone=True), nullable=True),
    sa.Column('answered_by', _TEXT(length=32), nullable=True),
    sa.Column('answered_at', _WHEN(timezone=True), nullable=True),
    sa.Column('reason', _TEXT(length=1000), nullable=True),
    sa.Column('dm_channel', _TEXT(length=32), nullable=True),
    sa.Column('dm_ts', _TEXT(length=32), nullable=True),
    sa.Column('escalated_at', _WHEN(timezone=True), nullable=True),
    sa.Column('security_channel', _TEXT(length=32), nullable=True),
    sa.Column('security_ts', _TEXT(length=32), nullable=True),
    sa.Column('acknowledged_by', _TEXT(length=32), nullable=True),
    sa.Column('claimed_at', _WHEN(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', name='uq_activity_event_event_id'),
    sa.UniqueConstraint('token', name='uq_activity_event_token')
    )
    with op.batch_alter_table('activity_event', schema=None) as batch_op:
        batch_op.create_index('ix_activity_event_state_deadline', ['state', 'answer_due'], unique=False)
        batch_op.create_index('ix_activity_event_received_at', ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('activity_event', schema=None) as batch_op:
        batch_op.drop_index('ix_activity_event_received_at')
        batch_op.drop_index('ix_activity_event_state_deadline')
    op.drop_table('activity_event')
    with op.batch_alter_table('activity_seen', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activity_seen_seen_at'))
    op.drop_table('activity_seen')
