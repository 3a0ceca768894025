"""Imports every operation module, so that each registers itself (ops/registry.py)."""

from fhir_server.ops import reindex_status, validate

__all__ = ["reindex_status", "validate"]
