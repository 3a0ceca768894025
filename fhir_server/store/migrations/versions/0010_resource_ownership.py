"""who owns each resource, and which clinic contributed it

Revision ID: 0010
Revises: 0009

DESIGN.md section 3: the portable profile belongs to the patient (`owner_patient`), everything a
clinic records to that clinic (`owner_clinic`), and a clinic always sees what it wrote itself
(`contributor_clinic`). The server assigns them on every write (interactions/ownership.py); the
policy's predicates read them (store/compile_access.py). Rows written before have none: they are
the platform's, visible to no clinic.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("owner_patient", "owner_clinic", "contributor_clinic"):
        op.add_column("resource", sa.Column(name, sa.String(64), nullable=True))
    op.create_index("ix_resource_owner_clinic", "resource", ["owner_clinic", "resource_type", "id"])
    op.create_index("ix_resource_contributor_clinic", "resource", ["contributor_clinic", "resource_type", "id"])
    op.create_index("ix_resource_owner_patient", "resource", ["owner_patient", "resource_type"])


def downgrade() -> None:
    for name in ("ix_resource_owner_patient", "ix_resource_contributor_clinic", "ix_resource_owner_clinic"):
        op.drop_index(name, table_name="resource")
    for name in ("contributor_clinic", "owner_clinic", "owner_patient"):
        op.drop_column("resource", name)
