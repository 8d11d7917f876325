"""scan rows as per-account jobs; procrastinate's queue on PostgreSQL

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 23:15:00

A run's rows are created up front (`queued`), so one row per run and account is enforced.
On PostgreSQL this also creates procrastinate's schema (its jobs table, functions and
triggers), the queue the `steward worker` processes share. SQLite runs scans in-process
and needs none. Upgrading procrastinate later needs its own migrations (the SQL files
under procrastinate/sql/migrations), applied as a new Alembic revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('scan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_unique_constraint('uq_scan_run_account', ['run_id', 'account_id'])
    if op.get_bind().dialect.name == 'postgresql':
        from procrastinate.schema import SchemaManager

        # The schema file as procrastinate ships it (procrastinate==3.10.0 in pyproject).
        _run_sql(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _run_sql(
            """
            DO $$
            DECLARE f record;
            BEGIN
              FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                       JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'
              LOOP EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE'; END LOOP;
            END $$;
            DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
              procrastinate_jobs, procrastinate_workers CASCADE;
            DROP TYPE IF EXISTS procrastinate_job_event_type, procrastinate_job_status,
              procrastinate_job_to_defer_v1 CASCADE;
            """
        )
    with op.batch_alter_table('scan', schema=None) as batch_op:
        batch_op.drop_constraint('uq_scan_run_account', type_='unique')
        batch_op.drop_column('attempts')


def _run_sql(script: str) -> None:
    # Straight to psycopg, in the migration's transaction: the script's `%` (RAISE
    # formats) are not parameters, and psycopg parses none when given no parameters.
    with op.get_bind().connection.dbapi_connection.cursor() as cursor:
        cursor.execute(script)
