"""payments: Stripe Checkout top-ups; indexes for the usage page and GET /api/logs on large log tables

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

# (name, columns): a user's, a key's or a model's newest rows first, and a user's rows over a time range,
# read from an index instead of sorting or scanning the whole table
USAGE_INDEXES = (
    ('ix_usage_logs_user_id_id', ['user_id', 'id']),
    ('ix_usage_logs_key_id_id', ['key_id', 'id']),
    ('ix_usage_logs_model_id', ['model', 'id']),
    ('ix_usage_logs_user_id_created_at', ['user_id', 'created_at']),
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


def downgrade():
    for name, _columns in reversed(USAGE_INDEXES):
        op.drop_index(name, table_name='usage_logs')
    op.drop_index('ix_payments_user_id', table_name='payments')
    op.drop_table('payments')
