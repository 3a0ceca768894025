"""Tables: current resources, every version, and the search index tables.

FHIR R4 http.html#versioning: each write adds a version; `resource` holds the newest one (with
its `deleted` mark, since delete is soft), `resource_version` every version ever written. The
index tables hold one row per extracted search value (search.html, one table per parameter
type) and are replaced in the same transaction as the write. Every key starts with the resource
type and id, so that the tables could be distributed by that key later.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()

RESOURCE_TYPE = String(64)
RESOURCE_ID = String(64)

resource = Table(
    "resource",
    metadata,
    Column("resource_type", RESOURCE_TYPE, primary_key=True),
    Column("id", RESOURCE_ID, primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", LargeBinary, nullable=True),
    # Ownership (DESIGN.md section 3; migration 0010): assigned by the server on every write.
    Column("owner_patient", RESOURCE_ID, nullable=True),
    Column("owner_clinic", RESOURCE_ID, nullable=True),
    Column("contributor_clinic", RESOURCE_ID, nullable=True),
    Index("ix_resource_type_updated", "resource_type", "last_updated"),
    Index("ix_resource_owner_clinic", "owner_clinic", "resource_type", "id"),
    Index("ix_resource_contributor_clinic", "contributor_clinic", "resource_type", "id"),
    Index("ix_resource_owner_patient", "owner_patient", "resource_type"),
)

OWNERS = ("owner_patient", "owner_clinic", "contributor_clinic")

resource_version = Table(
    "resource_version",
    metadata,
    Column("resource_type", RESOURCE_TYPE, primary_key=True),
    Column("id", RESOURCE_ID, primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", DateTime, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", LargeBinary, nullable=True),
    Index("ix_version_updated", "last_updated"),
    Index("ix_version_type_updated", "resource_type", "last_updated"),
)


def _index_table(name: str, *value_columns: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("resource_type", RESOURCE_TYPE, nullable=False),
        Column("resource_id", RESOURCE_ID, nullable=False),
        Column("param", String(64), nullable=False),
        *value_columns,
        Index(f"ix_{name}_owner", "resource_type", "resource_id"),
    )


# What each column holds is written down in search/clauses.py (IndexRow).
token_index = _index_table(
    "idx_token",
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("text", Text, nullable=True),
)
Index("ix_idx_token_value", token_index.c.resource_type, token_index.c.param, token_index.c.code)

string_index = _index_table("idx_string", Column("value", Text, nullable=False), Column("exact", Text, nullable=True))
Index("ix_idx_string_value", string_index.c.resource_type, string_index.c.param, string_index.c.value)

date_index = _index_table("idx_date", Column("low", DateTime, nullable=True), Column("high", DateTime, nullable=True))
Index("ix_idx_date_value", date_index.c.resource_type, date_index.c.param, date_index.c.low, date_index.c.high)
Index("ix_idx_date_high", date_index.c.resource_type, date_index.c.param, date_index.c.high)

number_index = _index_table("idx_number", Column("low", Numeric, nullable=True), Column("high", Numeric, nullable=True))
Index("ix_idx_number_value", number_index.c.resource_type, number_index.c.param, number_index.c.low)

quantity_index = _index_table(
    "idx_quantity",
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("canonical_code", Text, nullable=True),
    Column("canonical_low", Float, nullable=True),
    Column("canonical_high", Float, nullable=True),
)
Index("ix_idx_quantity_value", quantity_index.c.resource_type, quantity_index.c.param, quantity_index.c.low)

reference_index = _index_table(
    "idx_reference",
    Column("target_type", RESOURCE_TYPE, nullable=True),
    Column("target_id", RESOURCE_ID, nullable=True),
    Column("url", Text, nullable=True),
)
Index(
    "ix_idx_reference_target",
    reference_index.c.target_type,
    reference_index.c.target_id,
    reference_index.c.param,
    reference_index.c.resource_type,
)

Index(
    "ix_idx_reference_target_id", reference_index.c.target_id, reference_index.c.param, reference_index.c.resource_type
)

uri_index = _index_table("idx_uri", Column("value", Text, nullable=False))
Index("ix_idx_uri_value", uri_index.c.resource_type, uri_index.c.param, uri_index.c.value)

# Composite parameters (search.html#composite): one row per value of one component of one element,
# `element_key` numbering the elements of a resource per parameter, `component` the position;
# the value columns are those of the component's type (search/clauses.py).
composite_index = _index_table(
    "idx_composite",
    Column("element_key", Integer, nullable=False),
    Column("component", Integer, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("text", Text, nullable=True),
    Column("value", Text, nullable=True),
    Column("exact", Text, nullable=True),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("canonical_code", Text, nullable=True),
    Column("canonical_low", Float, nullable=True),
    Column("canonical_high", Float, nullable=True),
    Column("date_low", DateTime, nullable=True),
    Column("date_high", DateTime, nullable=True),
    Column("target_type", RESOURCE_TYPE, nullable=True),
    Column("target_id", RESOURCE_ID, nullable=True),
    Column("url", Text, nullable=True),
)
Index(
    "ix_idx_composite_value",
    composite_index.c.resource_type,
    composite_index.c.param,
    composite_index.c.component,
    composite_index.c.code,
)

INDEX_TABLES = {
    "token": token_index,
    "string": string_index,
    "date": date_index,
    "number": number_index,
    "quantity": quantity_index,
    "reference": reference_index,
    "uri": uri_index,
    "composite": composite_index,
}


def _access_facts(name: str) -> Table:
    """Facts the access policy reads (migration 0012): a patient's registration at a clinic, or
    their profile-sharing consent for it, each kept from the resource it comes from (`id`)."""
    return Table(
        name,
        metadata,
        Column("id", RESOURCE_ID, primary_key=True),
        Column("patient_id", RESOURCE_ID, nullable=False),
        Column("clinic_id", RESOURCE_ID, nullable=False),
        Column("active", Boolean, nullable=False),
        Column("starts", DateTime, nullable=True),
        Column("ends", DateTime, nullable=True),
        Index(f"ix_{name}_patient_clinic", "patient_id", "clinic_id"),
    )


registration = _access_facts("registration")
sharing_consent = _access_facts("sharing_consent")
ACCESS_FACTS = {"registration": registration, "sharing": sharing_consent}

# Background work any worker process may pick up (DESIGN.md section 4): reindexing after a custom
# SearchParameter now; export, import and segment refresh later. `payload` is JSON text.
job = Table(
    "job",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done | failed
    Column("payload", Text, nullable=False),
    Column("processed", Integer, nullable=False),
    Column("total", Integer, nullable=True),
    Column("message", Text, nullable=True),
    Column("created", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    Index("ix_job_state", "state", "created"),
)
