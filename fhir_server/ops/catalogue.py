"""Imports every operation module, so that each registers itself (ops/registry.py)."""

from fhir_server.ops import everything, reindex_status, validate

__all__ = ["everything", "reindex_status", "validate"]
