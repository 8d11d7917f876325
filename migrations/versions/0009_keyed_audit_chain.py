"""keyed audit chain: key id per event, the head's MAC, INSERT guards

Columns: `audit_event.key_id` (null for unkeyed events, so existing chains stay as they
are) and `audit_chain_head.head_mac`; an index on `audit_ref.sequence` (verify reads the
references event range by event range). Triggers added by hand, on SQLite and PostgreSQL:

* an event may only be inserted at the head: sequence = head + 1 and prev_hash = the head's
  hash, and never unkeyed after a keyed event;
* an audit_ref row may only be inserted for the event being appended (after the head);
* the head's guard now also refuses changing `head_mac` without advancing.

Someone who can drop triggers can still do all of that; `steward audit verify` with the key
and published heads is what catches them (see bot/db/audit.py).

SQLite: a column change may rebuild a table, which drops its triggers, and renaming a table
fails while another table's trigger names a missing one; so every audit trigger is dropped
first and recreated after the column changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# --- PostgreSQL -------------------------------------------------------------------------

_PG_HEAD_GUARD = """
    CREATE OR REPLACE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND (
            (NEW.last_sequence = OLD.last_sequence AND NEW.last_hash = OLD.last_hash{same_mac})
            OR (NEW.last_sequence = OLD.last_sequence + 1 AND EXISTS (
                SELECT 1 FROM audit_event
                WHERE sequence = NEW.last_sequence AND hash = NEW.last_hash))
        ) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit chain head may only advance to the newest event: % refused', TG_OP;
    END;
    $$
"""
PG_HEAD_GUARD_0009 = _PG_HEAD_GUARD.format(same_mac=" AND NEW.head_mac IS NOT DISTINCT FROM OLD.head_mac")
PG_HEAD_GUARD_0002 = _PG_HEAD_GUARD.format(same_mac="")

PG_UPGRADE = (
    PG_HEAD_GUARD_0009,
    """
    CREATE FUNCTION audit_event_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        head_sequence integer;
        head_hash varchar;
        previous_key varchar;
    BEGIN
        SELECT last_sequence, last_hash INTO head_sequence, head_hash
        FROM audit_chain_head WHERE id = 1;
        IF NOT FOUND OR NEW.sequence <> head_sequence + 1 OR NEW.prev_hash <> head_hash THEN
            RAISE EXCEPTION 'audit log is append-only: an event may only be inserted at the chain head';
        END IF;
        SELECT key_id INTO previous_key FROM audit_event WHERE sequence = head_sequence;
        IF previous_key IS NOT NULL AND NEW.key_id IS NULL THEN
            RAISE EXCEPTION 'audit log is append-only: the chain is keyed, an unkeyed event is refused';
        END IF;
        RETURN NEW;
    END;
    $$
    """,
    """
    CREATE FUNCTION audit_ref_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND NEW.sequence > last_sequence) THEN
            RAISE EXCEPTION 'audit log is append-only: references only for the event being appended';
        END IF;
        RETURN NEW;
    END;
    $$
    """,
    "CREATE TRIGGER audit_event_insert_guard BEFORE INSERT ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_insert_guard()",
    "CREATE TRIGGER audit_ref_insert_guard BEFORE INSERT ON audit_ref "
    "FOR EACH ROW EXECUTE FUNCTION audit_ref_insert_guard()",
)
PG_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS audit_event_insert_guard ON audit_event",
    "DROP TRIGGER IF EXISTS audit_ref_insert_guard ON audit_ref",
    "DROP FUNCTION IF EXISTS audit_event_insert_guard()",
    "DROP FUNCTION IF EXISTS audit_ref_insert_guard()",
    PG_HEAD_GUARD_0002,
)

# --- SQLite -------------------------------------------------------------------------------


def _sqlite_refuse(name: str, when: str, table: str, condition: str = "", message: str = "") -> str:
    message = message or f"audit log is append-only: {when} on {table} refused"
    return f"CREATE TRIGGER {name} BEFORE {when} ON {table} {condition} BEGIN SELECT RAISE(ABORT, '{message}'); END"


_HEAD_FORWARD_ONLY = (
    "WHEN NOT (NEW.id = OLD.id AND ("
    "(NEW.last_sequence = OLD.last_sequence AND NEW.last_hash = OLD.last_hash{same_mac}) "
    "OR (NEW.last_sequence = OLD.last_sequence + 1 AND EXISTS ("
    "SELECT 1 FROM audit_event WHERE sequence = NEW.last_sequence AND hash = NEW.last_hash))))"
)
# Frozen copy of migration 0002's triggers (a migration never imports another one).
SQLITE_0002 = (
    _sqlite_refuse("audit_event_no_update", "UPDATE", "audit_event"),
    _sqlite_refuse("audit_event_no_delete", "DELETE", "audit_event"),
    _sqlite_refuse("audit_ref_no_update", "UPDATE", "audit_ref"),
    _sqlite_refuse("audit_ref_no_delete", "DELETE", "audit_ref"),
    _sqlite_refuse("audit_chain_head_no_insert", "INSERT", "audit_chain_head"),
    _sqlite_refuse("audit_chain_head_no_delete", "DELETE", "audit_chain_head"),
)
SQLITE_HEAD_0002 = _sqlite_refuse(
    "audit_chain_head_forward_only", "UPDATE", "audit_chain_head", _HEAD_FORWARD_ONLY.format(same_mac=""),
)
SQLITE_HEAD_0009 = _sqlite_refuse(
    "audit_chain_head_forward_only", "UPDATE", "audit_chain_head",
    _HEAD_FORWARD_ONLY.format(same_mac=" AND NEW.head_mac IS OLD.head_mac"),
)
SQLITE_0009 = (
    _sqlite_refuse(
        "audit_event_insert_at_head", "INSERT", "audit_event",
        "WHEN NOT COALESCE((SELECT NEW.sequence = h.last_sequence + 1 AND NEW.prev_hash = h.last_hash "
        "FROM audit_chain_head h WHERE h.id = 1), 0)",
        "audit log is append-only: an event may only be inserted at the chain head",
    ),
    _sqlite_refuse(
        "audit_event_stays_keyed", "INSERT", "audit_event",
        "WHEN NEW.key_id IS NULL AND EXISTS (SELECT 1 FROM audit_event "
        "WHERE sequence = NEW.sequence - 1 AND key_id IS NOT NULL)",
        "audit log is append-only: the chain is keyed, an unkeyed event is refused",
    ),
    _sqlite_refuse(
        "audit_ref_insert_at_head", "INSERT", "audit_ref",
        "WHEN NOT COALESCE((SELECT NEW.sequence > h.last_sequence FROM audit_chain_head h WHERE h.id = 1), 0)",
        "audit log is append-only: references only for the event being appended",
    ),
)
SQLITE_NAMES = (
    "audit_event_no_update", "audit_event_no_delete", "audit_ref_no_update", "audit_ref_no_delete",
    "audit_chain_head_no_insert", "audit_chain_head_no_delete", "audit_chain_head_forward_only",
    "audit_event_insert_at_head", "audit_event_stays_keyed", "audit_ref_insert_at_head",
)


def _sqlite_triggers(statements: Sequence[str]) -> None:
    for name in SQLITE_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_triggers(())
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table('audit_chain_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head_mac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))

    with op.batch_alter_table('audit_ref', schema=None) as batch_op:
        batch_op.create_index('ix_audit_ref_sequence', ['sequence'], unique=False)
    # ### end Alembic commands ###
    if dialect == "postgresql":
        for statement in PG_UPGRADE:
            op.execute(statement)
    elif dialect == "sqlite":
        _sqlite_triggers((*SQLITE_0002, SQLITE_HEAD_0009, *SQLITE_0009))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in PG_DOWNGRADE:
            op.execute(statement)
    elif dialect == "sqlite":
        _sqlite_triggers(())
    with op.batch_alter_table('audit_ref', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_ref_sequence')
    if dialect == "sqlite":
        # Batch mode would copy audit_event, which audit_ref's foreign key forbids (and
        # foreign_keys cannot be switched off inside the migration's transaction); SQLite
        # 3.35+ drops a column in place.
        op.execute("ALTER TABLE audit_event DROP COLUMN key_id")
        op.execute("ALTER TABLE audit_chain_head DROP COLUMN head_mac")
    else:
        op.drop_column('audit_event', 'key_id')
        op.drop_column('audit_chain_head', 'head_mac')
    if dialect == "sqlite":
        _sqlite_triggers((*SQLITE_0002, SQLITE_HEAD_0002))
