"""Search result parameters (R4 search.html#return, #_type): what to return, not what matches.

`_sort=a,-b` (search.html#sort; `_id` and `_lastUpdated` are sort keys of their own), `_count`
(#count; 0 asks for the total only), `_total` (#total), `_summary` (#summary), `_elements`
(#elements), `_include` / `_revinclude` with `:iterate` and the `*` wildcard (#include), and
`_type` for a search across all types.
"""

from __future__ import annotations

import re

from fhir_server.search.clauses import Include, SortKey
from fhir_server.search.criteria import MODIFIERS, Scope, resolve, target_type
from fhir_server.search.protected import check_sortable
from fhir_server.search.syntax import MODIFIER, UNKNOWN, UNSUPPORTED, VALUE, Problem, or_values, unescape
from fhir_server.search.values import is_resource_type

TOTALS = ("none", "estimate", "accurate")
SUMMARIES = ("true", "text", "data", "count", "false")
SPECIAL_SORTS = ("_id", "_lastUpdated")

# A root element name (search.html#elements), optionally qualified by its type as in `Patient.name`.
_ELEMENT = re.compile(r"(?:[A-Z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*")
_COUNT = re.compile(r"[0-9]+")


def parse_sort(scope: Scope, types: tuple[str, ...], raw: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in or_values(raw):
        descending = item.startswith("-")
        code = unescape(item[1:] if descending else item)
        if code in SPECIAL_SORTS:
            keys.append(SortKey(None, descending, special=code))
            continue
        if ":" in code:
            raise Problem(MODIFIER, f"Sort key '{code}' cannot take a modifier")
        if code == "_score" or "." in code:
            raise Problem(UNSUPPORTED, f"Sorting by '{code}' is not supported")
        param = resolve(scope, types, code)
        if param.type not in MODIFIERS or param.type == "composite" or not param.expression:
            raise Problem(UNSUPPORTED, f"Sorting by {param.type} parameter '{code}' is not supported")
        check_sortable(param)
        keys.append(SortKey(param, descending))
    return tuple(keys)


def parse_count(raw: str, max_count: int) -> int:
    if not _COUNT.fullmatch(raw):
        raise Problem(VALUE, f"_count must be a whole number, not '{raw}'")
    return max_count if len(raw.lstrip("0")) > 9 else min(int(raw), max_count)


def parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise Problem(VALUE, f"{name} must be one of {', '.join(choices)}, not '{raw}'")
    return raw


def parse_elements(raw: str) -> tuple[str, ...]:
    elements = [unescape(item) for item in or_values(raw)]
    for element in elements:
        if not _ELEMENT.fullmatch(element):
            raise Problem(VALUE, f"'{element}' is not an element name")
    return tuple(dict.fromkeys(elements))


def parse_types(raw: str) -> tuple[str, ...]:
    types = [unescape(item) for item in or_values(raw)]
    for name in types:
        if not is_resource_type(name):
            raise Problem(VALUE, f"'{name}' is not a resource type")
    return tuple(dict.fromkeys(types))


def parse_include(scope: Scope, raw: str, iterate: bool, reverse: bool) -> Include:
    """`*`, `Source:*`, `Source:param` or `Source:param:Target` (one value: includes do not OR)."""
    if raw == "*":
        return Include("*", None, None, iterate, reverse)
    if "," in raw:
        raise Problem(VALUE, f"'{raw}': an include takes one value; repeat the parameter for more")
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise Problem(VALUE, f"'{raw}' is not [type]:[parameter] or [type]:[parameter]:[target type]")
    source, code = parts[0], parts[1]
    if not is_resource_type(source):
        raise Problem(VALUE, f"'{source}' in '{raw}' is not a resource type")
    if code == "*":
        if len(parts) == 3 and not is_resource_type(parts[2]):
            raise Problem(VALUE, f"'{parts[2]}' in '{raw}' is not a resource type")
        return Include(source, None, parts[2] if len(parts) == 3 else None, iterate, reverse)
    param = scope.lookup(source, code)
    if param is None:
        raise Problem(UNKNOWN, f"Unknown search parameter '{code}' for {source}")
    if param.type != "reference":
        raise Problem(VALUE, f"'{code}' of {source} is a {param.type} parameter, not a reference parameter")
    if not param.expression:
        raise Problem(UNSUPPORTED, f"Search parameter '{code}' of {source} is not supported yet")
    target = None
    if len(parts) == 3:
        try:
            target = target_type(param, parts[2])
        except Problem as problem:
            raise Problem(VALUE, problem.message) from None
    return Include(source, param, target, iterate, reverse)
