"""AuditEvent content (IHE BALP, R4 auditevent.html), built as plain dicts. Pure: it writes nothing;
the interactions store what it builds (interactions/auditing.py)."""

from fhir_server.audit.event import AuditRecord, Touched, audit_event

__all__ = ["AuditRecord", "Touched", "audit_event"]
