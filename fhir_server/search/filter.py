"""`_filter` (R4 search_filter.html): a filter expression to clauses the store already compiles.

Syntax (search_filter.html#grammar): `path op value`, joined by `and` / `or`, evaluated left to
right with no precedence between them ("If there is ambiguity, use parentheses"), grouped with
`( )`, negated with `not( )`. A path is a search parameter of the searched type, or a chain of
reference parameters ending in one (`subject.name`, through the references' declared targets).
A value is a JSON string, or a token: any run of characters other than whitespace, `)` and `]`.

Operators, by parameter type (search_filter.html#ops); those that have a URL form become the
same clause the URL form gives (`co` is `:contains`, `ss` is `:below`, `in` is `:in`, a prefix
for dates and numbers), the rest a `CompareClause`:

| type | operators |
|---|---|
| string | eq (whole value, case and accent insensitive), ne, co, sw, ew |
| token | eq, ne, ss (`:below`), sb (`:above`), in (`:in`), ni (`:not-in`) |
| date | eq ne gt lt ge le sa eb ap (search.html#prefix), po (overlaps) |
| number, quantity | eq ne gt lt ge le sa eb ap |
| reference | eq, re, ne |
| uri | eq, ne, sw (`:below`) |
| `_id` | eq, ne |
| `_lastUpdated` | eq ne gt lt ge le sa eb ap po |

`pr true|false` applies to all (`:missing=false|true`). Tokens take `system|code` as in a URL
search; the system may be one of the abbreviations `loinc`, `snomed`, `rxnorm`, `ucum`.
`ne` means "an item in the set has an unequal value" (search_filter.html#ops); `not(x eq y)` is
"no item equals". Not supported: filters inside a path (`related[type eq x].target`), `co` on
dates and numbers, string `gt`/`lt`/`ge`/`le`, token case-insensitivity, composite and special
parameters. A whole `_filter` is one parameter: a problem anywhere in it is one issue.
Parameters over encrypted values (search/protected.py) match by keyed hash: ContactPoint ones
take `eq` (and `pr`) only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from fhir_server.search.clauses import (
    AllClause,
    AnyClause,
    ChainClause,
    Clause,
    CompareClause,
    IdClause,
    LastUpdatedClause,
    NotClause,
    ParamClause,
    StringValue,
    Token,
    UriValue,
)
from fhir_server.search.criteria import Scope, resolve
from fhir_server.search.params import SearchParam
from fhir_server.search.protected import CONTACT, PROTECTED, protected_value, protection, redacted
from fhir_server.search.syntax import UNKNOWN, UNSUPPORTED, VALUE, Problem
from fhir_server.search.values import (
    LOGICAL_ID,
    parse_date,
    parse_number,
    parse_quantity,
    parse_reference,
    parse_token,
)

OPERATORS = frozenset(
    {"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap", "sa", "eb", "pr", "po", "ss", "sb", "in", "ni", "re"}
)
ORDERED = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")  # the search prefixes
SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ucum": "http://unitsofmeasure.org",
}
MAX_COMPARISONS = 64
MAX_DEPTH = 16

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_PATH_CHARS = re.compile(r"[A-Za-z0-9_\-.]*")
_WORD = re.compile(r"[A-Za-z]+")
_VALUE_END = frozenset(")]")


# --- syntax ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    operator: str
    value: str


@dataclass(frozen=True)
class Logical:
    operator: str  # and | or
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Negation:
    node: Node


Node = Comparison | Logical | Negation


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.comparisons = 0

    def fail(self, message: str, code: str = VALUE) -> Problem:
        return Problem(code, f"_filter: {message} (at character {self.pos + 1})")

    def skip(self) -> bool:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos > start

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if not found:
            return ""
        self.pos = found.end()
        return found.group()

    def expect(self, char: str) -> None:
        self.skip()
        if self.peek() != char:
            shown = f"'{self.peek()}'" if self.peek() else "the end"
            raise self.fail(f"expected '{char}', found {shown}")
        self.pos += 1


def parse_expression(text: str) -> Node:
    """The syntax tree of a filter expression (Problem on a syntax error)."""
    reader = _Reader(text)
    node = _expression(reader)
    reader.skip()
    if reader.pos < len(text):
        raise reader.fail(f"unexpected '{text[reader.pos]}'")
    return node


def _expression(reader: _Reader) -> Node:
    node = _unary(reader)
    while True:
        reader.skip()
        if reader.peek() in ("", ")"):
            return node
        start = reader.pos
        word = reader.match(_WORD).lower()
        if word not in ("and", "or"):
            reader.pos = start
            raise reader.fail("expected 'and', 'or' or the end of the expression")
        if not reader.skip() and reader.peek() != "(":
            raise reader.fail(f"expected a space after '{word}'")
        right = _unary(reader)
        if isinstance(node, Logical) and node.operator == word:
            node = Logical(word, (*node.parts, right))
        else:
            node = Logical(word, (node, right))


def _unary(reader: _Reader) -> Node:
    reader.skip()
    if reader.peek() == "(":
        return _group(reader)
    start = reader.pos
    path = reader.match(_PATH_CHARS)
    if path.lower() == "not":
        reader.skip()
        if reader.peek() == "(":
            return Negation(_group(reader))
        reader.pos = start + len(path)
    return _comparison(reader, start, path)


def _group(reader: _Reader) -> Node:
    reader.depth += 1
    if reader.depth > MAX_DEPTH:
        raise reader.fail(f"more than {MAX_DEPTH} levels of parentheses")
    reader.pos += 1
    node = _expression(reader)
    reader.expect(")")
    reader.depth -= 1
    return node


def _comparison(reader: _Reader, start: int, path: str) -> Comparison:
    if reader.peek() == "[":
        raise reader.fail("filters inside a path (name[filter].name) are not supported", UNSUPPORTED)
    names = tuple(path.split("."))
    if not path or not all(_NAME.fullmatch(name) for name in names):
        reader.pos = start
        raise reader.fail("expected a search parameter name, '(' or 'not('")
    if not reader.skip():
        raise reader.fail(f"expected a space after '{path}'")
    operator = reader.match(_WORD).lower()
    if operator not in OPERATORS:
        raise reader.fail(f"'{operator or reader.peek()}' is not a filter operator")
    if not reader.skip():
        raise reader.fail(f"expected a space after '{operator}'")
    reader.comparisons += 1
    if reader.comparisons > MAX_COMPARISONS:
        raise reader.fail(f"more than {MAX_COMPARISONS} comparisons")
    return Comparison(names, operator, _value(reader))


def _value(reader: _Reader) -> str:
    text, start = reader.text, reader.pos
    if reader.peek() == '"':
        end = start + 1
        while end < len(text) and text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise reader.fail("a string value has no closing quote")
        reader.pos = end + 1
        try:
            return str(json.loads(text[start : end + 1]))
        except ValueError:
            raise reader.fail("a string value is not a valid JSON string") from None
    while reader.pos < len(text) and not text[reader.pos].isspace() and text[reader.pos] not in _VALUE_END:
        reader.pos += 1
    if reader.pos == start:
        raise reader.fail("expected a value")
    return text[start : reader.pos]


# --- translation -------------------------------------------------------------------------------


def parse_filter(scope: Scope, types: tuple[str, ...], raw: str) -> Clause:
    """One `_filter` value as one clause about resources of `types`."""
    return _clause(scope, types, parse_expression(raw))


def _clause(scope: Scope, types: tuple[str, ...], node: Node) -> Clause:
    if isinstance(node, Logical):
        parts = tuple(_clause(scope, types, part) for part in node.parts)
        return AllClause(parts) if node.operator == "and" else AnyClause(parts)
    if isinstance(node, Negation):
        return NotClause(_clause(scope, types, node.node))
    return _compare(scope, types, node, every=True)


def _compare(scope: Scope, types: tuple[str, ...], comparison: Comparison, every: bool) -> Clause:
    code, operator, value = comparison.path[0], comparison.operator, comparison.value
    if len(comparison.path) > 1:
        param = resolve(scope, types, code, every)
        if param.type != "reference":
            raise Problem(UNKNOWN, f"_filter: '{code}' is a {param.type} parameter: only references can be chained")
        if not param.expression or not param.targets:
            raise Problem(UNSUPPORTED, f"_filter: the chain through '{code}' is not supported")
        inner = _compare(scope, param.targets, replace(comparison, path=comparison.path[1:]), every=False)
        return ChainClause(param, param.targets, inner)
    if code == "_id":
        return _id(operator, value)
    if code == "_lastUpdated":
        return _last_updated(operator, value)
    param = resolve(scope, types, code, every)
    if param.type not in _BY_TYPE or not param.expression:
        raise Problem(UNSUPPORTED, f"_filter: {param.type} parameter '{code}' is not supported")
    if operator == "pr":
        return ParamClause(param, missing=not _boolean(value))
    kind = protection(param)
    clause = (
        _BY_TYPE[param.type](scope, param, operator, value)
        if kind is None
        else _protected(scope, param, kind, comparison)
    )
    if clause is None:
        raise Problem(UNSUPPORTED, f"_filter: '{operator}' is not supported on {param.type} parameter '{code}'")
    return clause


def _protected(scope: Scope, param: SearchParam, kind: str, comparison: Comparison) -> Clause | None:
    """A comparison on a parameter over protected values (search/protected.py): exact matches by
    keyed hash; on ContactPoint parameters nothing else; the value never echoed in a message."""
    operator = comparison.operator
    if kind == CONTACT and (param.type != "token" or operator != "eq"):
        raise Problem(PROTECTED, f"_filter: '{param.code}' holds encrypted values: only 'eq' can match them")
    try:
        clause = _BY_TYPE[param.type](scope, param, operator, comparison.value)
    except Problem as problem:
        raise redacted(param, problem) from None
    if isinstance(clause, ParamClause) and clause.modifier is None:
        return replace(clause, values=tuple(protected_value(kind, value) for value in clause.values))
    return clause


def _boolean(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise Problem(VALUE, f"_filter: 'pr' takes true or false, not '{value}'")
    return value.lower() == "true"


def _id(operator: str, value: str) -> Clause:
    if operator == "pr":
        return AllClause(()) if _boolean(value) else AnyClause(())
    if operator not in ("eq", "ne"):
        raise Problem(UNSUPPORTED, f"_filter: '{operator}' is not supported on '_id'")
    if not LOGICAL_ID.fullmatch(value):
        raise Problem(VALUE, f"_filter: '{value}' is not a valid resource id")
    return IdClause((value,)) if operator == "eq" else NotClause(IdClause((value,)))


def _last_updated(operator: str, value: str) -> Clause:
    if operator == "pr":
        return AllClause(()) if _boolean(value) else AnyClause(())
    if operator not in (*ORDERED, "po"):
        raise Problem(UNSUPPORTED, f"_filter: '{operator}' is not supported on '_lastUpdated'")
    # An instant overlaps a period exactly when the period contains it: `po` is `eq`.
    return LastUpdatedClause((parse_date(("eq" if operator == "po" else operator) + value, "_lastUpdated"),))


def _string(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    text = StringValue(value)
    if operator == "sw":
        return ParamClause(param, (text,))
    if operator == "co":
        return ParamClause(param, (text,), "contains")
    return CompareClause(param, operator, text) if operator in ("eq", "ne", "ew") else None


def _token(value: str) -> Token:
    token = parse_token(value)
    if token.system in SYSTEMS:
        return Token(SYSTEMS[token.system], token.code, token.system_given)
    return token


def _token_clause(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    if operator in ("in", "ni"):
        if any(char.isspace() for char in value):
            raise Problem(VALUE, f"_filter: '{value}' is not a ValueSet URL or ValueSet/[id]")
        return ParamClause(param, (UriValue(value),), "in" if operator == "in" else "not-in")
    if operator not in ("eq", "ne", "ss", "sb"):
        return None
    token = _token(value)
    if operator == "eq":
        return ParamClause(param, (token,))
    if operator == "ne":
        return CompareClause(param, "ne", token)
    if not token.system or not token.code:
        raise Problem(VALUE, f"_filter: '{operator}' takes system|code: the system names the code system")
    return ParamClause(param, (token,), "below" if operator == "ss" else "above")


def _date(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    if operator == "po":
        overlapping = parse_date("eq" + value, param.code)
        return CompareClause(param, "po", replace(overlapping, prefix="po"))
    return ParamClause(param, (parse_date(operator + value, param.code),)) if operator in ORDERED else None


def _number(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    return ParamClause(param, (parse_number(operator + value),)) if operator in ORDERED else None


def _quantity(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    return ParamClause(param, (parse_quantity(operator + value),)) if operator in ORDERED else None


def _reference(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    if operator not in ("eq", "re", "ne"):
        return None
    reference = parse_reference(value, None, scope.base_url)
    return CompareClause(param, "ne", reference) if operator == "ne" else ParamClause(param, (reference,))


def _uri(scope: Scope, param: SearchParam, operator: str, value: str) -> Clause | None:
    uri = UriValue(value)
    if operator == "eq":
        return ParamClause(param, (uri,))
    if operator == "sw":
        return ParamClause(param, (uri,), "below")
    return CompareClause(param, "ne", uri) if operator == "ne" else None


_BY_TYPE = {
    "string": _string,
    "token": _token_clause,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "reference": _reference,
    "uri": _uri,
}
