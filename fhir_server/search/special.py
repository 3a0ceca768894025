"""`_list` and the token values that name stored terminology (R4 search.html#list, #token).

- `_list=42` (or `List/42`; OR-ed ids): the resources that List/42 refers to in `List.entry.item`,
  i.e. `_has:List:item:_id=42`. The "functional" lists (`$current-allergies`, ...) are refused.
- `:in` / `:not-in`: a ValueSet stored on this server, by its canonical `url` (optionally
  `url|version`) or as `ValueSet/[id]`; kept as a `UriValue` until the store reads the set.
- `:above` / `:below`: `system|code`, the system naming a CodeSystem stored on this server whose
  hierarchy says what subsumes what (a code alone names no hierarchy).
"""

from __future__ import annotations

from fhir_server.search.clauses import HasClause, IdClause, Token, UriValue
from fhir_server.search.params import SearchParam
from fhir_server.search.syntax import MODIFIER, UNSUPPORTED, VALUE, Problem, or_values, unescape
from fhir_server.search.values import LOGICAL_ID, parse_token

LIST_ITEM = ("List", "item")


def parse_list(list_item: SearchParam | None, modifier: str | None, raw: str) -> HasClause:
    """`list_item` is the registry's List `item` parameter (None if it has none)."""
    if modifier is not None:
        raise Problem(MODIFIER, "'_list' takes no modifier")
    if list_item is None or list_item.type != "reference" or not list_item.expression:
        raise Problem(UNSUPPORTED, "'_list' needs the List 'item' reference parameter, which is not available")
    ids: list[str] = []
    for text in or_values(raw):
        value = unescape(text)
        if value.startswith("$"):
            raise Problem(UNSUPPORTED, f"The functional list '{value}' is not supported")
        value = value.removeprefix("List/")
        if not LOGICAL_ID.fullmatch(value):
            raise Problem(VALUE, f"'{text}' is not the id of a List (42 or List/42)")
        ids.append(value)
    return HasClause("List", list_item, IdClause(tuple(dict.fromkeys(ids))))


def parse_value_set(text: str) -> UriValue:
    """The value of `:in` / `:not-in`: which ValueSet (checked against the store later)."""
    value = unescape(text)
    if any(char.isspace() for char in value):
        raise Problem(VALUE, f"'{value}' is not a ValueSet URL or ValueSet/[id]")
    return UriValue(value)


def parse_subsumption(text: str, modifier: str) -> Token:
    """The value of token `:above` / `:below`: `system|code`, both parts required."""
    token = parse_token(text)
    if not token.system or not token.code:
        message = f"':{modifier}' takes system|code: the system names the code system whose hierarchy applies"
        raise Problem(VALUE, message)
    return token
