"""access reviews: the principal inventory each scan keeps, campaigns, items and messages

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29 01:36:22.603574
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.db.types

revision: str = '0013'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('principal_inventory',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('arn', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('entitlements', sa.JSON(), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('last_used', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'arn', name='uq_principal_inventory_arn')
    )
    with op.batch_alter_table('principal_inventory', schema=None) as batch_op:
        batch_op.create_index('ix_principal_inventory_scan', ['scan_id'], unique=False)

    op.create_table('review_campaign',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('accounts', sa.JSON(), nullable=False),
    sa.Column('scans', sa.JSON(), nullable=False),
    sa.Column('population', sa.Integer(), nullable=False),
    sa.Column('inventory_count', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('started_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('started_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('progress_channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('progress_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('progress_updated_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('review_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('arn', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('snapshot', sa.JSON(), nullable=False),
    sa.Column('reviewer', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('routed_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('delegated_from', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('delegation_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('details_seen_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('decided_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_seconds', sa.Float(), nullable=True),
    sa.Column('removed', sa.JSON(), nullable=False),
    sa.Column('remediation_ids', sa.JSON(), nullable=False),
    sa.Column('removal_errors', sa.JSON(), nullable=False),
    sa.Column('audit_sequences', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['review_campaign.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'arn', name='uq_review_item_arn'),
    sa.UniqueConstraint('token', name='uq_review_item_token')
    )
    with op.batch_alter_table('review_item', schema=None) as batch_op:
        batch_op.create_index('ix_review_item_reviewer', ['campaign_id', 'reviewer'], unique=False)

    op.create_table('review_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('reviewer', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('attempted_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('sent_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('details_opened_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['review_campaign.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'reviewer', name='uq_review_message_reviewer'),
    sa.UniqueConstraint('token', name='uq_review_message_token')
    )


def downgrade() -> None:
    op.drop_table('review_message')
    with op.batch_alter_table('review_item', schema=None) as batch_op:
        batch_op.drop_index('ix_review_item_reviewer')

    op.drop_table('review_item')
    op.drop_table('review_campaign')
    with op.batch_alter_table('principal_inventory', schema=None) as batch_op:
        batch_op.drop_index('ix_principal_inventory_scan')

    op.drop_table('principal_inventory')
