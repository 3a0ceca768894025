"""search index columns

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.create_index("ix_idx_date_value", ["resource_type", "param", "low", "high"], unique=False)

    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.create_index("ix_idx_number_value", ["resource_type", "param", "low"], unique=False)

    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("canonical_code", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("canonical_low", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("canonical_high", sa.Float(), nullable=True))
        batch_op.create_index("ix_idx_quantity_value", ["resource_type", "param", "low"], unique=False)

    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.create_index(
            "ix_idx_reference_target", ["target_type", "target_id", "param", "resource_type"], unique=False
        )

    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exact", sa.Text(), nullable=True))
        batch_op.create_index("ix_idx_string_value", ["resource_type", "param", "value"], unique=False)

    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("text", sa.Text(), nullable=True))

    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.create_index("ix_idx_uri_value", ["resource_type", "param", "value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idx_uri", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_uri_value")

    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.drop_column("text")

    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_string_value")
        batch_op.drop_column("exact")

    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_reference_target")

    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_quantity_value")
        batch_op.drop_column("canonical_high")
        batch_op.drop_column("canonical_low")
        batch_op.drop_column("canonical_code")

    with op.batch_alter_table("idx_number", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_number_value")

    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.drop_index("ix_idx_date_value")
