"""Search parameter definitions as the registry hands them out (R4 searchparameter.html).

One `SearchParam` per (resource type, code): the official definitions are shared by several base
types with a union expression (`Patient.birthDate | Person.birthDate`); the registry keeps, for
each type, only the part of the expression that applies to it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Parameter types (search.html#ptypes) and the index table each one is stored in.
INDEXED_TYPES = {
    "string": "string",
    "token": "token",
    "date": "date",
    "number": "number",
    "quantity": "quantity",
    "reference": "reference",
    "uri": "uri",
}


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the parameter it reuses and the path relative to the element."""

    definition: str  # canonical URL of the component's SearchParameter
    expression: str


@dataclass(frozen=True)
class SearchParam:
    resource_type: str
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    expression: str | None  # FHIRPath, narrowed to this resource type; None when not indexable
    url: str = ""
    targets: tuple[str, ...] = ()  # reference targets
    components: tuple[Component, ...] = ()  # composite parts

    @property
    def table(self) -> str | None:
        """The index table the values live in, or None (composite, special, unindexable)."""
        return INDEXED_TYPES.get(self.type) if self.expression else None
