"""remediation leases, approval message and undo approval

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 22:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
COLUMNS = (
    ('lease_owner', _TEXT(length=200)),
    ('lease_expires_at', bot.db.types.UTCDateTime(timezone=True)),
    ('approval_channel', _TEXT(length=32)),
    ('approval_ts', _TEXT(length=32)),
    ('undo_requested_by', _TEXT(length=200)),
    ('undo_requested_at', bot.db.types.UTCDateTime(timezone=True)),
    ('undo_decided_by', _TEXT(length=200)),
    ('undo_approval_ts', _TEXT(length=32)),
)


def upgrade() -> None:
    with op.batch_alter_table('remediation', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('remediation', schema=None) as batch_op:
        for name, _type in reversed(COLUMNS):
            batch_op.drop_column(name)
