"""reference index led by target_id

Revision ID: 0006
Revises: 0005

`Observation?patient=123` names no target type, so `ix_idx_reference_target` (led by
target_type) cannot serve it; with 6 million reference rows the search measured 821 ms -> 5.8 ms
with this index (bench/search.py). It also serves `_has` and `_revinclude` probes by id.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_idx_reference_target_id", "idx_reference", ["target_id", "param", "resource_type"])


def downgrade() -> None:
    op.drop_index("ix_idx_reference_target_id", table_name="idx_reference")
