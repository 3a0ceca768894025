"""composite search index

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idx_composite",
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("element_key", sa.Integer(), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("exact", sa.Text(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("canonical_code", sa.Text(), nullable=True),
        sa.Column("canonical_low", sa.Float(), nullable=True),
        sa.Column("canonical_high", sa.Float(), nullable=True),
        sa.Column("date_low", sa.DateTime(), nullable=True),
        sa.Column("date_high", sa.DateTime(), nullable=True),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("idx_composite", schema=None) as batch_op:
        batch_op.create_index("ix_idx_composite_owner", ["resource_type", "resource_id"], unique=False)
        batch_op.create_index("ix_idx_composite_value", ["resource_type", "param", "component", "code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idx_composite", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_composite_value")
        batch_op.drop_index("ix_idx_composite_owner")

    op.drop_table("idx_composite")
