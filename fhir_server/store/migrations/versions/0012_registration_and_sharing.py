"""patients' registrations at clinics, and their profile-sharing consents

Revision ID: 0012
Revises: 0011

DESIGN.md section 3: a clinic sees a patient's portable profile only while the patient is
registered there and has an active profile-sharing Consent for it. Both are FHIR resources
(EpisodeOfCare managed by the clinic; Consent of the platform's profile-sharing category); these
tables hold the facts the access policy needs in SQL, replaced in the same transaction as the
resource they come from (interactions/ownership.py), so a revocation takes effect at once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _facts(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(64), primary_key=True),  # the EpisodeOfCare or Consent id
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("clinic_id", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("starts", sa.DateTime, nullable=True),
        sa.Column("ends", sa.DateTime, nullable=True),
    )
    op.create_index(f"ix_{name}_patient_clinic", name, ["patient_id", "clinic_id"])


def upgrade() -> None:
    _facts("registration")
    _facts("sharing_consent")


def downgrade() -> None:
    op.drop_table("sharing_consent")
    op.drop_table("registration")
