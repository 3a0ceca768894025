"""`_content` and `_text`: full-text search on the whole resource and on its narrative (R4
search.html#text, #content; narrative.html).

Words: text normalised as for string search (normalize.py: case and accents folded, whitespace
collapsed), then split into runs of letters and digits, every other visible character
(punctuation, `%`, `_`) being a word of its own: `Peter ("Jim") O'Brien` has the words
`peter ( " jim " ) o ' brien`. Stored and searched text go through the same function.

Index side, on every write, in one pass over the resource JSON (no FHIRPath):

- `_content`: every string-like primitive of the resource in document order (strings, codes,
  markdown, displays, identifiers' values, narratives as text, contained resources too), except
  what is not text: ids, references (internal ids), URIs (`url`, `system`, `profile`...), base64
  (`data`, `hash`...), dates and times; numbers and booleans are not strings in JSON.
- `_text` (DomainResources): the text content of `text.div`, the XHTML parsed by lxml's HTML
  parser (entities such as `&nbsp;` resolved, tags, comments and scripts dropped).
- Neither holds a protected value (model/sensitive.py: phone numbers, emails, national ids):
  a string that is one is skipped, and where a text repeats one verbatim it is cut out.

Each is stored as `idx_string` rows (search/clauses.py) whose `value` is the words joined by single
spaces with a leading and a trailing space, so that `value LIKE '% term%'` finds a word that starts
with the term, or a phrase of several words (store/compile_values.py, `text_condition`).

Search side: `_content=blood pressure` (one value: one term, the phrase) matches a resource with a
word starting `blood` followed by a word starting `pressure`... precisely: whose stored text
contains ` blood pressure`. Commas OR terms, repetition ANDs them; no modifier applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from fhir_server.model.sensitive import Secrets, secrets_of
from fhir_server.search.clauses import IndexRow, TextClause
from fhir_server.search.normalize import normalize
from fhir_server.search.params import SearchParam
from fhir_server.search.syntax import MODIFIER, VALUE, Problem, or_values, unescape

CONTENT, TEXT = "_content", "_text"
PARAMETERS = frozenset({CONTENT, TEXT})

# Limits. The text is rebuilt on every write and searched with LIKE, so a resource that is huge
# (a document Bundle, a report with a long narrative) must not write megabytes of index rows:
# only the first MAX_TEXT_BYTES of words are searchable. Rows hold at most ROW_BYTES each because
# idx_string.value is in two B-tree indexes on PostgreSQL, whose entries cannot exceed 2,704 bytes
# (a longer value makes the insert fail); a longer text is split into rows that repeat the last
# OVERLAP_BYTES of the previous one, so that a phrase up to that long is found across a cut.
# MAX_WORD_CHARS (at most 4 bytes each in UTF-8) keeps one word far smaller than a row.
MAX_TEXT_BYTES = 32_000
ROW_BYTES = 2_000
OVERLAP_BYTES = 500
MAX_WORD_CHARS = 100

_WORD = re.compile(rf"[^\W_]{{1,{MAX_WORD_CHARS}}}|[^\w\s]|_")
# Dates, dateTimes, instants and times (datatypes.html#primitive): not text.
_DATE_OR_TIME = re.compile(
    r"-?[0-9]{4}-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?"
    r"|[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
)
# Keys whose string values are not text. Other keys are read, including inside these ones when
# they hold objects (`valueReference.display`).
_NOT_TEXT = frozenset(
    {
        "resourceType",
        "id",
        "reference",
        "url",
        "system",
        "profile",
        "fullUrl",
        "data",
        "hash",
        "carrierAIDC",
        "valueBase64Binary",
        "valueId",
        "valueUri",
        "valueUrl",
        "valueCanonical",
        "valueOid",
        "valueUuid",
        "versionId",
    }
)


# --- words -------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The normalised words of `text` (module docstring); a word longer than MAX_WORD_CHARS is
    split, the same way in stored and searched text."""
    return _WORD.findall(normalize(text))  # type: ignore[no-any-return]


def search_term(text: str) -> str:
    """A search value as the stored text would hold it ("" when it has no word)."""
    return " ".join(words(text))


# --- index side --------------------------------------------------------------------------------


def narrative_text(div: str) -> str:
    """The text content of an XHTML narrative (lxml's HTML parser: lenient, no network, no DTD)."""
    parser = etree.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)  # not shareable by threads
    try:
        root = etree.fromstring(div, parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return ""
    if root is None:
        return ""
    etree.strip_elements(root, "script", "style", with_tail=False)
    return " ".join(root.itertext())


class _Collector:
    """The text of a resource's string values in document order, until there is enough; protected
    values (model/sensitive.py) left out, also where a longer text repeats one."""

    def __init__(self, budget: int, secrets: Secrets) -> None:
        self.parts: list[str] = []
        self.budget = budget  # characters still wanted (the byte cap applies to the words later)
        self.secrets = secrets

    def add(self, text: str) -> None:
        if self.secrets:
            if self.secrets.covers(text):
                return
            text = self.secrets.redact(text, " ")
        if self.budget > 0 and text:
            self.parts.append(text[: self.budget])
            self.budget -= len(text) + 1

    def walk(self, node: Any, key: str = "") -> None:
        """`key`: the name the node (or the list holding it) has in its parent."""
        if self.budget <= 0:
            return
        if isinstance(node, str):
            if key not in _NOT_TEXT and not _DATE_OR_TIME.fullmatch(node):
                self.add(node)
        elif isinstance(node, dict):
            div = node.get("div")
            if isinstance(div, str):  # a Narrative: its text, not its status code
                self.add(narrative_text(div))
                return
            for name, value in node.items():
                self.walk(value, name)
        elif isinstance(node, list):
            for item in node:
                self.walk(item, key)


def row_values(found: list[str]) -> list[str]:
    """The stored values of a text's words: ` w1 w2 ... `, the first MAX_TEXT_BYTES of them, in
    overlapping rows of at most ROW_BYTES (see the limits above)."""
    single = " " + " ".join(found) + " "
    if len(single) <= ROW_BYTES // 4 or len(single.encode()) <= ROW_BYTES:  # most resources
        return [single] if found else []
    sizes: list[int] = []  # of each word, with the space before it
    total = 1  # the trailing space
    for word in found:
        size = len(word.encode()) + 1
        total += size
        if total > MAX_TEXT_BYTES:
            break
        sizes.append(size)
    return list(_overlapping(found[: len(sizes)], sizes))


def _overlapping(found: list[str], sizes: list[int]) -> Iterator[str]:
    """Rows of at most ROW_BYTES. A phrase of at most OVERLAP_BYTES that crosses a cut lies whole
    in the next row, which starts at most OVERLAP_BYTES before the cut."""
    start, count = 0, len(found)
    while start < count:
        end, size = start, 1  # the trailing space
        while end < count and size + sizes[end] <= ROW_BYTES:
            size += sizes[end]
            end += 1
        yield " " + " ".join(found[start:end]) + " "
        if end == count:
            return
        back, repeated = end, 0
        while back - 1 > start and repeated + sizes[back - 1] <= OVERLAP_BYTES:
            back -= 1
            repeated += sizes[back]
        start = back


def _rows(code: str, text: str) -> Iterator[IndexRow]:
    for value in row_values(words(text)):
        yield IndexRow("string", code, {"value": value, "exact": None})


def index_rows(resource: dict[str, Any], secrets: Secrets | None = None) -> list[IndexRow]:
    """The `_text` (when the resource has a narrative) and `_content` rows of a resource, without
    its protected values (`secrets`, by default found with the built-in configuration)."""
    if secrets is None:
        secrets = secrets_of(resource)
    rows: list[IndexRow] = []
    narrative = resource.get("text")
    div = narrative.get("div") if isinstance(narrative, dict) else None
    narrative_words = secrets.redact(narrative_text(div), " ") if isinstance(div, str) else ""
    if narrative_words:
        rows.extend(_rows(TEXT, narrative_words))
    collector = _Collector(2 * MAX_TEXT_BYTES, secrets)  # raw text: narratives shrink when whitespace collapses
    collector.add(narrative_words)
    collector.walk({key: value for key, value in resource.items() if key != "text"})
    rows.extend(_rows(CONTENT, " ".join(collector.parts)))
    return rows


# --- search side -------------------------------------------------------------------------------


def parse_text(param: SearchParam, modifier: str | None, raw: str) -> TextClause:
    """`_text=...` / `_content=...`: OR-ed terms; no modifier (`:missing` neither) applies."""
    if modifier is not None:
        raise Problem(MODIFIER, f"Modifier ':{modifier}' does not apply to '{param.code}'")
    terms: list[str] = []
    for text in or_values(raw):
        term = search_term(unescape(text))
        if not term:
            raise Problem(VALUE, f"'{text}' has no word to search for in '{param.code}'")
        terms.append(term)
    return TextClause(param.code, tuple(dict.fromkeys(terms)))
