"""payments: Stripe Checkout top-ups; usage rollups and log indexes for the usage page and GET /api/logs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# (name, columns): a user's, a key's, a model's or a user's model's newest rows first, read from an index
# instead of sorting or scanning the whole table
USAGE_INDEXES = (
    ('ix_usage_logs_user_id_id', ['user_id', 'id']),
    ('ix_usage_logs_key_id_id', ['key_id', 'id']),
    ('ix_usage_logs_model_id', ['model', 'id']),
    ('ix_usage_logs_user_id_model_id', ['user_id', 'model', 'id']),
)


def upgrade():
    op.create_table(
        'payments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('amount_micro_usd', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('session_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('paid_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id', name='uq_payments_session_id'),
    )
    op.create_index('ix_payments_user_id', 'payments', ['user_id'])
    for name, columns in USAGE_INDEXES:
        op.create_index(name, 'usage_logs', columns)
    # sums per hour and day, user, key, model and outcome (gateway/domain/usage.py), filled on first read
    op.create_table(
        'usage_rollups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=4), nullable=False),
        sa.Column('bucket', sa.DateTime(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=128), nullable=False),
        sa.Column('failed', sa.Boolean(), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
        sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
        sa.Column('cost_micro_usd', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('period', 'bucket', 'user_id', 'key_id', 'model', 'failed', name='uq_usage_rollups'),
    )
    op.create_index('ix_usage_rollups_user', 'usage_rollups', ['period', 'user_id', 'bucket'])
    marks = op.create_table(
        'usage_rollup_marks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last_log_id', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(marks, [{'id': 1, 'last_log_id': 0}])
    fill_rollups()


def fill_rollups():
    """The rollups of the logs already written, in SQL (a big log would take the first page view long)."""
    postgres = op.get_bind().dialect.name == 'postgresql'
    for period in ('hour', 'day'):
        if postgres:
            bucket = f"date_trunc('{period}', created_at)"
        else:  # the text SQLAlchemy stores a DateTime as in SQLite
            bucket = "strftime('%Y-%m-%d " + ('%H' if period == 'hour' else '00') + ":00:00.000000', created_at)"
        op.execute(
            "INSERT INTO usage_rollups (period, bucket, user_id, key_id, model, failed, requests, prompt_tokens, "
            "completion_tokens, cost_micro_usd) "
            f"SELECT '{period}', {bucket}, coalesce(user_id, 0), coalesce(key_id, 0), model, status >= 400, "
            "count(id), sum(prompt_tokens), sum(completion_tokens), sum(cost_micro_usd) "
            "FROM usage_logs GROUP BY 2, 3, 4, 5, 6"
        )
    op.execute("UPDATE usage_rollup_marks SET last_log_id = (SELECT coalesce(max(id), 0) FROM usage_logs)")


def downgrade():
    op.drop_table('usage_rollup_marks')
    op.drop_index('ix_usage_rollups_user', table_name='usage_rollups')
    op.drop_table('usage_rollups')
    for name, _columns in reversed(USAGE_INDEXES):
        op.drop_index(name, table_name='usage_logs')
    op.drop_index('ix_payments_user_id', table_name='payments')
    op.drop_table('payments')
