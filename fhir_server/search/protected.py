"""Search over protected values (issue 5 point 9; R4 search.html#token).

Protected values (model/sensitive.py: ContactPoint.value, national identifiers, and copies of
them) are stored encrypted, and their token index rows hold a keyed hash (model/protect.py
`blind`) instead of the value. So:

- Index side (`protect_rows`): a token row whose code is a protected value (once normalised) is
  marked `secret`, and the store hashes it; an `:of-type` row (`TYPE|value`) likewise from its
  value. Any other row holding a protected value (a string or uri row, a custom parameter over
  `telecom.value`) is dropped: it could not be searched without revealing the value.
- Search side (`protected_value`): a parameter is classified from the types its expression
  yields (`value_types`, from the R4 element definitions). CONTACT: only ContactPoints (telecom,
  phone, email on Patient, Practitioner, RelatedPerson, ...): values are searched by hash only.
  MIXED: identifiers, a Reference's identifier (`:identifier`), and parameters whose types are
  not known statically: both the value as written and its hash are searched, since national and
  other identifiers share the parameter. The store does the hashing (store/compile_protected.py).
- Exact matching is all a hash allows. On a CONTACT parameter the modifiers `:text`, `:in`,
  `:not-in`, `:above`, `:below`, `:of-type`, sorting, and `_filter` operators other than `eq`
  are refused with 400 `search-modifier-protected` rather than answered wrongly; `:not` and
  `:missing` work. A string parameter over protected values refuses every search the same way.
- Messages about a protected parameter's value never repeat the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import cache, lru_cache

from fhir_server.model.definitions import elements
from fhir_server.model.sensitive import Secrets
from fhir_server.search.clauses import IndexRow, ProtectedToken, Token, Value
from fhir_server.search.fhirpath_parse import (
    Binary,
    Call,
    Index,
    Literal,
    Member,
    Node,
    This,
    TypeOp,
    Unsupported,
    parse,
)
from fhir_server.search.params import SearchParam
from fhir_server.search.registry import official_params
from fhir_server.search.syntax import Problem
from fhir_server.search.values import all_resource_types

PROTECTED = "search-modifier-protected"
CONTACT, MIXED = "contact", "mixed"
CONTACT_MODIFIERS = frozenset({"not"})  # besides none and :missing
_CONTACT_TYPES = frozenset({"ContactPoint", "ContactPoint.value"})
_IDENTIFIER_TYPES = frozenset({"Identifier", "Identifier.value"})
_OPEN = frozenset({"ContactPoint", "Identifier"})  # types whose `value` child is tracked


# --- which parameters ------------------------------------------------------------------------


@cache
def value_types(resource_type: str, expression: str) -> frozenset[str] | None:
    """The FHIR types `expression` yields on a `resource_type` (`ContactPoint.value` for the value
    of a ContactPoint, likewise for Identifier), or None when they cannot be told statically."""
    try:
        return _types(parse(expression), frozenset({resource_type}))
    except Unsupported:
        return None


def _types(node: Node, focus: frozenset[str]) -> frozenset[str] | None:
    if isinstance(node, Member):
        if node.base is None and node.name[:1].isupper():
            return frozenset({node.name})  # a type name starting the path
        base = focus if node.base is None else _types(node.base, focus)
        return None if base is None else _children(base, node.name)
    if isinstance(node, TypeOp):
        return frozenset({node.type_name}) if node.operator == "as" else frozenset({"boolean"})
    if isinstance(node, Call):
        return _call(node, focus)
    if isinstance(node, Index):
        return _types(node.base, focus)
    if isinstance(node, Binary):
        if node.operator != "|":
            return frozenset({"boolean"})
        left, right = _types(node.left, focus), _types(node.right, focus)
        return None if left is None or right is None else left | right
    if isinstance(node, Literal):
        return frozenset({node.type_name})
    return focus if isinstance(node, This) else None


def _call(node: Call, focus: frozenset[str]) -> frozenset[str] | None:
    if node.function in ("as", "ofType") and len(node.args) == 1 and isinstance(node.args[0], Literal):
        return frozenset({str(node.args[0].value)})
    if node.function == "where":
        return focus if node.base is None else _types(node.base, focus)
    if node.function in ("exists", "is"):
        return frozenset({"boolean"})
    return None  # resolve() and anything else: not known here


def _children(types: frozenset[str], name: str) -> frozenset[str] | None:
    found: set[str] = set()
    for type_key in types:
        try:
            table = elements(type_key)
        except KeyError:
            return None  # a primitive or an unknown path: no children known
        for info in table.values():
            if info.name != name and info.choice != name:
                continue
            if info.type_code == "Resource":
                return None
            found.add(f"{type_key}.value" if type_key in _OPEN and name == "value" else info.children_key)
    return frozenset(found)


@lru_cache(maxsize=4096)
def protection(param: SearchParam) -> str | None:
    """CONTACT, MIXED or None (module docstring) for a token or string parameter."""
    if param.type not in ("token", "string") or not param.expression:
        return None
    types = value_types(param.resource_type, param.expression)
    if param.type == "string":
        return CONTACT if types is not None and types & _CONTACT_TYPES else None
    if types is None:
        return MIXED
    if types and types <= _CONTACT_TYPES:
        return CONTACT
    return MIXED if types & (_CONTACT_TYPES | _IDENTIFIER_TYPES) else None


def check_modifier(param: SearchParam, modifier: str | None) -> None:
    """Refuses what a keyed hash cannot answer on a CONTACT parameter (400, PROTECTED)."""
    if protection(param) != CONTACT:
        return
    if param.type == "string":
        raise Problem(PROTECTED, f"'{param.code}' holds encrypted values: it cannot be searched as a string")
    if modifier is not None and modifier not in CONTACT_MODIFIERS:
        message = f"'{param.code}' holds encrypted values: only exact matches (and :not, :missing) are possible"
        raise Problem(PROTECTED, f"{message}, not ':{modifier}'")


def check_sortable(param: SearchParam) -> None:
    if protection(param) == CONTACT:
        raise Problem(PROTECTED, f"'{param.code}' holds encrypted values: it cannot be sorted by")


def protected_value(kind: str | None, value: Value) -> Value:
    """A token value of a protected parameter, marked for the store to hash (`kind`: CONTACT or
    MIXED; other values, such as a `:text` string or an `:in` ValueSet, pass as they are)."""
    if kind is None or not isinstance(value, Token) or value.code is None:
        return value
    return ProtectedToken(value, clear=kind != CONTACT)


def redacted(param: SearchParam, problem: Problem) -> Problem:
    """A value problem of a protected parameter, reworded so as not to repeat the value."""
    message = f"The value of '{param.code}' is not a valid {param.type} (protected values are not repeated here)"
    return Problem(problem.error_code, message)


# --- index rows ---------------------------------------------------------------------------------


def protect_rows(rows: Iterable[IndexRow], secrets: Secrets) -> list[IndexRow]:
    """`rows` with protected values marked for hashing (token) or left out (others)."""
    if not secrets:
        return list(rows)
    kept: list[IndexRow] = []
    for row in rows:
        if row.kind in ("token", "composite") and isinstance(row.values.get("code"), str):
            kept.append(_marked(row, secrets))
        elif not any(isinstance(value, str) and secrets.covers(value) for value in row.values.values()):
            kept.append(row)
    return kept


def _marked(row: IndexRow, secrets: Secrets) -> IndexRow:
    code = row.values["code"]
    if secrets.covers(code):
        return replace(row, secret=0)
    if row.param.endswith(":of-type"):
        start = _after_type(code)
        if start is not None and secrets.covers(code[start:]):
            return replace(row, secret=start)
    return row


def _after_type(code: str) -> int | None:
    """Where the value starts in an `:of-type` code (params.of_type_code): after the first `|`
    that no backslash escapes."""
    index = 0
    while index < len(code):
        if code[index] == "\\":
            index += 2
        elif code[index] == "|":
            return index + 1
        else:
            index += 1
    return None


# --- queries recorded elsewhere (audit trails, logs) -------------------------------------------


@cache
def _protected_codes() -> frozenset[str]:
    """Codes that are a CONTACT or MIXED parameter on some resource type (official definitions)."""
    return frozenset(
        code
        for resource_type in all_resource_types()
        for code, param in official_params(resource_type).items()
        if protection(param) is not None
    )


def redacted_query(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A search's `name=value` pairs fit to be recorded (an AuditEvent's query, a log line): the
    value of every parameter that may hold protected values, at the end of a chain or `_has`,
    with `:identifier`, and every `_filter`, replaced by `***`."""
    return [(name, "***" if _may_hold_protected(name) else value) for name, value in pairs]


def _may_hold_protected(name: str) -> bool:
    if name.startswith("_filter") or name.endswith(":identifier"):
        return True
    if name.startswith("_has:") and name.count(":") >= 3:
        return _may_hold_protected(name.split(":", 3)[3])
    return name.rsplit(".", 1)[-1].split(":")[0] in _protected_codes()
