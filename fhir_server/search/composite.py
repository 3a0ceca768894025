"""Composite search values (R4 search.html#composite): `code-value-quantity=http://loinc.org|8480-6$gt100`.

One OR-ed value is split on unescaped `$` into exactly one part per component; each part is read
with the value syntax of its component's type (the type of the SearchParameter the component's
definition URL names), so a number, date or quantity part takes its prefixes (`$gt100`, and
MolecularSequence's `1$lt345$gt123` on middle parts too). Composite parameters take no modifier
but `:missing`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fhir_server.search.clauses import CompositeValue, Value
from fhir_server.search.params import SearchParam
from fhir_server.search.syntax import VALUE, Problem, split_unescaped

ParsePart = Callable[[SearchParam, str], Value]
"""Reads one part as a value of the (stand-in) parameter it is given."""


def parse_composite(param: SearchParam, text: str, parse_part: ParsePart) -> CompositeValue:
    parts = split_unescaped(text, "$")
    if len(parts) != len(param.components):
        shape = "$".join(f"[{c.type}]" for c in param.components)
        raise Problem(VALUE, f"'{text}' is not a value of composite '{param.code}', {shape}")
    values = []
    for component, part in zip(param.components, parts, strict=True):
        if not part:
            raise Problem(VALUE, f"'{text}' has an empty part: every component of '{param.code}' needs a value")
        stand_in = replace(param, type=component.type, expression=component.expression, components=(), targets=())
        values.append(parse_part(stand_in, part))
    return CompositeValue(tuple(values))
