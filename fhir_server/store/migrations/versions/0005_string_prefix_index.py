"""string prefix index for PostgreSQL

Revision ID: 0005
Revises: 0004

Default string search is a prefix match (`value LIKE 'smi%'`). PostgreSQL uses a B-tree for LIKE
only with the pattern operator class when the database collation is not C; SQLite's LIKE
optimisation has its own rules and needs nothing here.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_idx_string_prefix",
            "idx_string",
            ["resource_type", "param", "value"],
            postgresql_ops={"value": "text_pattern_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_idx_string_prefix", table_name="idx_string")
