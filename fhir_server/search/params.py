"""Search parameter definitions as the registry hands them out (R4 searchparameter.html).

One `SearchParam` per (resource type, code): the official definitions are shared by several base
types with a union expression (`Patient.birthDate | Person.birthDate`); the registry keeps, for
each type, only the part of the expression that applies to it.

A composite parameter (search.html#composite) has an expression that selects elements (an
Observation, an Observation.component, a UsageContext) and `components`, each naming the
parameter it reuses (its definition URL, and the type the registry resolved from it) and an
expression relative to one such element.

Besides its own rows, a parameter may write rows under a derived name in another table (the
convention is shared by the extractor and the SQL compiler): `Reference.identifier` of reference
parameter `subject` as token rows under `subject:identifier` (search.html#reference), and the
typed identifiers of token parameter `identifier` as token rows under `identifier:of-type`
(search.html#token), see search/clauses.py.
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
    "composite": "composite",
}


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the parameter it reuses and the path relative to the element."""

    definition: str  # canonical URL of the component's SearchParameter
    expression: str
    type: str = ""  # the type of that SearchParameter (token, quantity, ...); "" when unknown


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
        """The index table the values live in, or None (special, unindexable, or a composite
        without components or with one of unknown type)."""
        if not self.expression:
            return None
        if self.type == "composite" and not (self.components and all(c.type for c in self.components)):
            return None
        return INDEXED_TYPES.get(self.type)


def identifier_param(code: str) -> str:
    """Where `Reference.identifier` values of reference parameter `code` are indexed: token rows
    under `<code>:identifier` (no extra column needed)."""
    return f"{code}:identifier"


def of_type_param(code: str) -> str:
    """Where identifiers of token parameter `code` are indexed with their type, for `:of-type`:
    token rows under `<code>:of-type` (see `of_type_code`)."""
    return f"{code}:of-type"


def of_type_code(type_code: str, value: str) -> str:
    """The `code` column of an `:of-type` row: the Identifier.type coding's code, with `\\` and
    `|` escaped as in search values, then `|`, then the Identifier.value (unambiguous, since the
    first unescaped `|` ends the type code)."""
    escaped = type_code.replace("\\", "\\\\").replace("|", "\\|")
    return f"{escaped}|{value}"
