"""seen Slack requests (replay protection)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('seen_request',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('seen_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('seen_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_request_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('seen_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_request_expires_at'))
    op.drop_table('seen_request')
