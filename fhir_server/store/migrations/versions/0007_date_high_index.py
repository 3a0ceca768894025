"""date index on the upper bound

Revision ID: 0007
Revises: 0006

`_sort=-date` orders resources by the highest upper bound of their dates (search.html#sort);
PostgreSQL reads such a page from the index rows in that order (compile_sort.driven_matches),
which needs the rows indexed by `high` as well as by `low`.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_idx_date_high", "idx_date", ["resource_type", "param", "high"])


def downgrade() -> None:
    op.drop_index("ix_idx_date_high", table_name="idx_date")
