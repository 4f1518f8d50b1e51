"""protocols: channel settings, cache-write prices, protocol columns on log rows, stored responses

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settings', sa.JSON(), nullable=True))
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cache_write_micro_per_mtok', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cache_write_tokens', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reasoning_tokens', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('protocol', sa.String(length=16), nullable=False, server_default='openai'))
        batch_op.add_column(sa.Column('channel_type', sa.String(length=32), nullable=False, server_default=''))
    op.create_table(
        'stored_responses',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), nullable=True),
        sa.Column('native', sa.Boolean(), nullable=False),
        sa.Column('model', sa.String(length=128), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('messages', sa.Text(), nullable=True),
        sa.Column('response', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_stored_responses_user_id', 'stored_responses', ['user_id'])
    op.create_index('ix_stored_responses_created_at', 'stored_responses', ['created_at'])
    op.create_index('ix_stored_responses_expires_at', 'stored_responses', ['expires_at'])


def downgrade():
    op.drop_index('ix_stored_responses_expires_at', table_name='stored_responses')
    op.drop_index('ix_stored_responses_created_at', table_name='stored_responses')
    op.drop_index('ix_stored_responses_user_id', table_name='stored_responses')
    op.drop_table('stored_responses')
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.drop_column('channel_type')
        batch_op.drop_column('protocol')
        batch_op.drop_column('reasoning_tokens')
        batch_op.drop_column('cache_write_tokens')
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.drop_column('cache_write_micro_per_mtok')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('settings')
