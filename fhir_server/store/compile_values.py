"""Index-row conditions for string, token, reference and uri values (R4 search.html#string,
#token, #reference, #uri) and for full-text terms (#text, #content).

Each function returns the condition one row of the parameter's index table (an alias, passed in)
must meet to match one search value; compiler.py ORs them and wraps them in EXISTS keyed by
(resource_type, resource_id, param). Columns are those written down in search/clauses.py; search
text is normalised with the extractor's own function (search/normalize.py).

A `ProtectedToken` is hashed before compiling (compile_protected.py); one that was not (a granular
scope's query, compiled into the access predicate) matches clear values only, and nothing on a
ContactPoint parameter: it fails closed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, false, func, literal, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import Invalid, NotSupported
from fhir_server.search.clauses import ProtectedToken, ReferenceValue, StringValue, Token, UriValue, Value
from fhir_server.search.normalize import normalize


def unsupported(kind: str, modifier: str | None) -> NotSupported:
    """A modifier the query parser let through but the index cannot answer yet (token `:above`,
    `:below`, `:of-type`, ...): 501, since the request itself is valid."""
    message = f"The modifier ':{modifier}' is not supported on {kind} parameters yet"
    return NotSupported(message, "search-modifier-unsupported")


def _expect(value: Value, kind: type[Any], param_type: str) -> Any:
    if not isinstance(value, kind):
        raise Invalid(f"A {type(value).__name__} is not a {param_type} search value", "search-value-invalid")
    return value


def starts_with(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    """`column` begins with `prefix`, case-sensitively on both databases.

    LIKE (wildcards escaped) lets an index help; SQLite's LIKE ignores ASCII case, so the substr
    comparison makes the match exact there."""
    return and_(column.startswith(prefix, autoescape=True), func.substr(column, 1, len(prefix)) == prefix)


def string_condition(table: FromClause, modifier: str | None, value: Value) -> ColumnElement[bool]:
    """Default: the normalised value starts with the normalised text; `:contains` anywhere in it;
    `:exact`: the whole string as written."""
    text = _expect(value, StringValue, "string").text
    if modifier == "exact":
        return table.c.exact == text
    normalised = normalize(text)
    if modifier == "contains":
        return table.c.value.contains(normalised, autoescape=True)  # type: ignore[no-any-return]
    if modifier is None:
        return table.c.value.startswith(normalised, autoescape=True)  # type: ignore[no-any-return]
    raise unsupported("string", modifier)


def text_condition(table: FromClause, term: str) -> ColumnElement[bool]:
    """`_text` / `_content` (search/fulltext.py): the stored words (` w1 w2 ... `) hold a word
    starting with the term, or the phrase it is: `value LIKE '% term%'`, the term's `%` and `_`
    escaped as for `:contains`. The term is normalised already (TextClause)."""
    return table.c.value.contains(" " + term, autoescape=True)  # type: ignore[no-any-return]


def token_condition(table: FromClause, value: Value) -> ColumnElement[bool]:
    """`code` (any system), `system|code`, `|code` (no system), `system|` (any code)."""
    if isinstance(value, ProtectedToken):  # not hashed (compile_protected.py) where it is compiled
        return token_condition(table, value.token) if value.clear else false()
    token = _expect(value, Token, "token")
    conditions: list[ColumnElement[bool]] = []
    if token.code is not None:
        conditions.append(table.c.code == token.code)
    if token.system_given:
        conditions.append(table.c.system == token.system if token.system else table.c.system.is_(None))
    return and_(*conditions) if conditions else false()


def token_text_condition(table: FromClause, value: Value) -> ColumnElement[bool]:
    """`:text`: a string search (starts-with, normalised) on the display / CodeableConcept.text."""
    text = (value.code or "") if isinstance(value, Token) else _expect(value, StringValue, "token :text").text
    return table.c.text.startswith(normalize(text), autoescape=True)  # type: ignore[no-any-return]


def reference_condition(table: FromClause, modifier: str | None, value: Value) -> ColumnElement[bool]:
    """`Type/id`, a bare id (any type, or the type of a `:Type` modifier) or an absolute/canonical
    URL; a value that names both a local target and a URL matches either."""
    reference = _expect(value, ReferenceValue, "reference")
    target_type = reference.target_type or _type_modifier(modifier)
    forms: list[ColumnElement[bool]] = []
    if reference.target_id is not None:
        local = [table.c.target_id == reference.target_id]
        if target_type:
            local.append(table.c.target_type == target_type)
        forms.append(and_(*local))
    if reference.url is not None:
        forms.append(table.c.url == reference.url)
    return or_(*forms) if forms else false()


def _type_modifier(modifier: str | None) -> str | None:
    if modifier is None:
        return None
    if modifier[:1].isupper() and modifier.isalnum():
        return modifier
    raise unsupported("reference", modifier)


def uri_condition(table: FromClause, modifier: str | None, value: Value) -> ColumnElement[bool]:
    """Equality; `:below`: the stored URI starts with the given one; `:above`: the given URI starts
    with the stored one (prefix semantics, case-sensitive)."""
    uri = _expect(value, UriValue, "uri").uri
    if modifier is None:
        return table.c.value == uri
    if modifier == "below":
        return starts_with(table.c.value, uri)
    if modifier == "above":
        return func.substr(literal(uri), 1, func.length(table.c.value)) == table.c.value  # type: ignore[no-any-return]
    raise unsupported("uri", modifier)
