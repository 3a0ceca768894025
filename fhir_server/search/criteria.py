"""Search criteria: one `name=value` pair to one clause (R4 search.html#modifiers, #chaining, #has).

The name is `code[:modifier]`, a chain `ref[:Type].code[:modifier]` of any depth, or a reverse
chain `_has:Type:ref:name` (which may nest). Every parameter type has one implementation, driven
by the `SearchParam` that `lookup` returns; nothing here is specific to a resource type.

`types` is where a name is looked up: the searched type; for a search across all types the
`_type` list, or every resource type without one (the parameter must then be defined on each of
them, search.html#_type); or the targets of a chained reference (the parameter must then be
defined on at least one of them, search.html#chaining).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.search import fulltext
from fhir_server.search.clauses import (
    ChainClause,
    Clause,
    HasClause,
    IdClause,
    LastUpdatedClause,
    ParamClause,
    Value,
)
from fhir_server.search.composite import parse_composite
from fhir_server.search.params import SearchParam
from fhir_server.search.protected import MIXED, check_modifier, protected_value, protection, redacted
from fhir_server.search.special import LIST_ITEM, parse_list, parse_subsumption, parse_value_set
from fhir_server.search.syntax import MODIFIER, UNKNOWN, UNSUPPORTED, VALUE, Problem, or_values, unescape
from fhir_server.search.values import (
    LOGICAL_ID,
    is_resource_type,
    parse_date,
    parse_number,
    parse_of_type,
    parse_quantity,
    parse_reference,
    parse_string,
    parse_token,
    parse_uri,
)

Lookup = Callable[[str, str], SearchParam | None]

# Modifiers per parameter type (search.html#modifiers); `:missing` applies to all of them, and a
# reference also takes `:[type]`. Special parameters are not supported yet.
MODIFIERS: dict[str, frozenset[str]] = {
    "composite": frozenset(),
    "number": frozenset(),
    "date": frozenset(),
    "quantity": frozenset(),
    "string": frozenset({"exact", "contains"}),
    "token": frozenset({"text", "not", "above", "below", "in", "not-in", "of-type"}),
    "uri": frozenset({"above", "below"}),
    "reference": frozenset({"identifier"}),
}
# Defined by search.html#modifiers but not implemented yet ("search-parameter-unsupported", where a
# modifier that does not apply to the type is "search-modifier-unsupported"): advanced text
# search (string :text), hierarchies (reference :above, :below).
PENDING_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"text"}),
    "reference": frozenset({"above", "below"}),
}
# Parameters for all resources that are not implemented yet (search.html#all, #query); `_filter`
# is read by query.py (filter.py), as a parameter of the search itself, never in a chain or `_has`.
# `_text` and `_content` are full-text parameters (fulltext.py).
PENDING_PARAMETERS = frozenset({"_query", "_filter"})


@dataclass(frozen=True)
class Scope:
    lookup: Lookup
    base_url: str | None = None  # absolute references under it are read as relative ones


def parse_criterion(scope: Scope, types: tuple[str, ...], name: str, raw: str, every_type: bool = True) -> Clause:
    if name == "_has" or name.startswith("_has:"):
        return _has(scope, types, name, raw)
    head, dot, rest = name.partition(".")
    code, colon, modifier = head.partition(":")
    if colon and not modifier:
        raise Problem(MODIFIER, f"'{name}' has an empty modifier")
    if dot:
        return _chain(scope, types, code, modifier or None, rest, raw, every_type)
    return _simple(scope, types, code, modifier or None, raw, every_type)


def resolve(scope: Scope, types: tuple[str, ...], code: str, every_type: bool = True) -> SearchParam:
    """The parameter `code` on `types` (on all of them when `every_type`, else on at least one)."""
    found = {t: p for t in types if (p := scope.lookup(t, code)) is not None}
    if not found:
        raise Problem(UNKNOWN, f"Unknown search parameter '{code}' for {_names(types, ' or ')}")
    if every_type and len(found) < len(types):
        missing = [t for t in types if t not in found]
        raise Problem(UNKNOWN, f"Search parameter '{code}' is not defined for {_names(missing, ', ')}")
    if len({p.type for p in found.values()}) > 1:
        raise Problem(UNSUPPORTED, f"Search parameter '{code}' has different types on {', '.join(found)}")
    return next(iter(found.values()))


def param_clause(scope: Scope, param: SearchParam, modifier: str | None, raw: str) -> ParamClause:
    if param.type not in MODIFIERS or param.table is None:  # no expression, or a composite without usable parts
        raise Problem(UNSUPPORTED, f"Search parameter '{param.code}' ({param.type}) is not supported yet")
    if modifier == "missing":
        return ParamClause(param, missing=_boolean(raw))
    check_modifier(param, modifier)
    if modifier in PENDING_MODIFIERS.get(param.type, ()):
        raise Problem(UNSUPPORTED, f"Modifier ':{modifier}' on {param.type} parameters is not supported yet")
    type_modifier = None
    if param.type == "reference" and modifier is not None and modifier not in MODIFIERS["reference"]:
        type_modifier, modifier = target_type(param, modifier), None
    elif modifier is not None and modifier not in MODIFIERS[param.type]:
        raise Problem(MODIFIER, f"Modifier ':{modifier}' does not apply to {param.type} parameter '{param.code}'")
    kind = _protection(param, modifier)
    if kind is None:
        values = tuple(_value(scope, param, modifier, type_modifier, text) for text in or_values(raw))
        return ParamClause(param, values, modifier)
    try:  # a protected value is neither echoed in a message nor searched in clear (protected.py)
        values = tuple(
            protected_value(kind, _value(scope, param, modifier, type_modifier, text)) for text in or_values(raw)
        )
    except Problem as problem:
        raise redacted(param, problem) from None
    return ParamClause(param, values, modifier)


def _protection(param: SearchParam, modifier: str | None) -> str | None:
    """How a value of `param` with `modifier` is matched against protected values (protected.py)."""
    if param.type == "reference":
        return MIXED if modifier == "identifier" else None
    if modifier not in (None, "not", "of-type"):
        return None
    return protection(param)


def target_type(param: SearchParam, name: str) -> str:
    """A `:[type]` modifier (or include target) checked against the reference's targets."""
    if not is_resource_type(name):
        message = f"':{name}' is neither a resource type nor a modifier of reference parameter '{param.code}'"
        raise Problem(MODIFIER, message)
    if param.targets and name not in param.targets:
        raise Problem(MODIFIER, f"Reference parameter '{param.code}' does not refer to {name}")
    return name


def _simple(scope: Scope, types: tuple[str, ...], code: str, modifier: str | None, raw: str, every: bool) -> Clause:
    if code in PENDING_PARAMETERS:
        raise Problem(UNSUPPORTED, f"Search parameter '{code}' is not supported yet")
    if code in fulltext.PARAMETERS:
        return fulltext.parse_text(resolve(scope, types, code, every), modifier, raw)
    if code == "_list":
        return parse_list(scope.lookup(*LIST_ITEM), modifier, raw)
    if code in ("_id", "_lastUpdated"):
        if modifier is not None:
            raise Problem(MODIFIER, f"Modifier ':{modifier}' does not apply to '{code}'")
        if code == "_id":
            return IdClause(tuple(_logical_id(text) for text in or_values(raw)))
        return LastUpdatedClause(tuple(parse_date(text, code) for text in or_values(raw)))
    return param_clause(scope, resolve(scope, types, code, every), modifier, raw)


def _chain(
    scope: Scope, types: tuple[str, ...], code: str, modifier: str | None, rest: str, raw: str, every: bool
) -> ChainClause:
    param = resolve(scope, types, code, every)
    if param.type != "reference":
        raise Problem(UNKNOWN, f"'{code}' is a {param.type} parameter: only reference parameters can be chained")
    if not param.expression:
        raise Problem(UNSUPPORTED, f"Search parameter '{code}' is not supported yet")
    if modifier is None:
        targets = param.targets
    elif modifier in MODIFIERS["reference"] or modifier == "missing":
        raise Problem(MODIFIER, f"A chain cannot go through '{code}:{modifier}'")
    else:
        targets = (target_type(param, modifier),)
    if not targets:
        raise Problem(UNSUPPORTED, f"'{code}' may refer to any resource type: name one, as in {code}:[type].{rest}")
    return ChainClause(param, targets, parse_criterion(scope, targets, rest, raw, every_type=False))


def _has(scope: Scope, types: tuple[str, ...], name: str, raw: str) -> HasClause:
    parts = name.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise Problem(UNKNOWN, f"'{name}' is not of the form _has:[type]:[reference parameter]:[parameter]")
    _, source, code, rest = parts
    if not is_resource_type(source):
        raise Problem(UNKNOWN, f"'{source}' in '{name}' is not a resource type")
    param = scope.lookup(source, code)
    if param is None or param.type != "reference":
        raise Problem(UNKNOWN, f"'{code}' is not a reference parameter of {source}")
    if not param.expression:
        raise Problem(UNSUPPORTED, f"Search parameter '{code}' of {source} is not supported yet")
    if types and param.targets and not set(types) & set(param.targets):
        raise Problem(UNKNOWN, f"{source}:{code} does not refer to {' or '.join(types)}")
    return HasClause(source, param, parse_criterion(scope, (source,), rest, raw))


def _value(scope: Scope, param: SearchParam, modifier: str | None, type_modifier: str | None, text: str) -> Value:
    kind = param.type
    if kind == "composite":
        return parse_composite(param, text, lambda part, value: _value(scope, part, None, None, value))
    if kind == "number":
        return parse_number(text)
    if kind == "date":
        return parse_date(text, param.code)
    if kind == "quantity":
        return parse_quantity(text)
    if kind == "string":
        return parse_string(text)
    if kind == "uri":
        return parse_uri(text)
    if kind == "token":
        if modifier == "text":
            return parse_string(text)
        if modifier in ("in", "not-in"):
            return parse_value_set(text)
        if modifier in ("above", "below"):
            return parse_subsumption(text, modifier)
        return parse_of_type(text) if modifier == "of-type" else parse_token(text)
    if modifier == "identifier":
        return parse_token(text)
    return parse_reference(text, type_modifier, scope.base_url)


def _names(types: list[str] | tuple[str, ...], joiner: str) -> str:
    shown = joiner.join(types[:5])
    return shown if len(types) <= 5 else f"{shown} and {len(types) - 5} other resource types"


def _boolean(raw: str) -> bool:
    if raw not in ("true", "false"):
        raise Problem(VALUE, f"':missing' takes true or false, not '{raw}'")
    return raw == "true"


def _logical_id(text: str) -> str:
    value = unescape(text)
    if not LOGICAL_ID.fullmatch(value):
        raise Problem(VALUE, f"'{value}' is not a valid resource id")
    return value
