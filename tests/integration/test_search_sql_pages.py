"""Search statements against both databases: `_sort`, keyset paging (also across concurrent
writes), counts, system search, `_include`/`_revinclude` steps and visibility (R4 search.html)."""

from __future__ import annotations

from datetime import datetime

import pytest

from fhir_server.errors import Invalid
from fhir_server.search.clauses import IdClause, ParamClause, SortKey, Token
from fhir_server.store.compile_sort import decode_keyset, encode_keyset
from fhir_server.store.repository import StoredVersion
from tests.integration.search_sql_helpers import (
    EVERYONE,
    MOMENT,
    NOBODY,
    Kinds,
    date_row,
    ids,
    number_row,
    param,
    put,
    quantity_row,
    reference_row,
    string_row,
    token_row,
)


def _pages(store, resource_type, sort, size, clauses=()):  # type: ignore[no-untyped-def]
    """Every page of a search, each continued from the previous page's last keyset via a token."""
    pages, after = [], None
    while True:
        with store.unit_of_work(EVERYONE, read_only=True) as uow:
            found = uow.search(resource_type, clauses, sort, size, after)
        if not found:
            return pages
        pages.append([row.id for row in found])
        after = decode_keyset(encode_keyset(found[-1].keyset))


def test_sort_by_each_parameter_type_with_missing_values_last(store):
    k = Kinds()
    put(
        store,
        k.Obs,
        "a",
        [
            date_row("date", datetime(2001, 1, 1), datetime(2005, 1, 1)),
            string_row("s", "m"),
            token_row("t", None, "b"),
            number_row("n", "2", "2"),
            reference_row("r", k.Pat, "y"),
        ],
    )
    put(
        store,
        k.Obs,
        "b",
        [
            date_row("date", datetime(2002, 1, 1), datetime(2003, 1, 1)),
            string_row("s", "z"),
            string_row("s", "a"),
            token_row("t", None, "a"),
            number_row("n", "10", "10"),
            reference_row("r", k.Pat, "x"),
        ],
    )
    put(
        store,
        k.Obs,
        "c",
        [date_row("date", None, datetime(2004, 1, 1)), string_row("s", "n"), number_row("n", "-1", "-1")],
    )
    put(store, k.Obs, "d")

    def order(code: str, kind: str, descending: bool = False) -> list[str]:
        return ids(store, k.Obs, sort=[SortKey(param(k.Obs, code, kind), descending)])

    # dates: ascending by the earliest start (an open start counts as missing), descending by the latest end
    assert order("date", "date") == ["a", "b", "c", "d"]
    assert order("date", "date", True) == ["a", "c", "b", "d"]
    assert order("s", "string") == ["b", "a", "c", "d"]  # b sorts by its lowest value, a
    assert order("s", "string", True) == ["b", "c", "a", "d"]  # ... and by its highest descending, z
    assert order("t", "token") == ["b", "a", "c", "d"]
    assert order("n", "number") == ["c", "a", "b", "d"]
    assert order("n", "number", True) == ["b", "a", "c", "d"]
    assert order("r", "reference") == ["b", "a", "c", "d"]
    assert ids(store, k.Obs, sort=[SortKey(None, True, "_id")]) == ["d", "c", "b", "a"]


def test_sort_by_quantity_last_updated_and_several_keys(store):
    k = Kinds()
    put(
        store,
        k.Obs,
        "a",
        [quantity_row("q", 5.5, None, "mg"), token_row("t", None, "x")],
        last_updated=datetime(2020, 1, 3),
    )
    put(
        store,
        k.Obs,
        "b",
        [quantity_row("q", 1.25, None, "mg"), token_row("t", None, "y")],
        last_updated=datetime(2020, 1, 1),
    )
    put(
        store,
        k.Obs,
        "c",
        [quantity_row("q", 3, None, "mg"), token_row("t", None, "x")],
        last_updated=datetime(2020, 1, 2),
    )
    assert ids(store, k.Obs, sort=[SortKey(param(k.Obs, "q", "quantity"), False)]) == ["b", "c", "a"]
    assert ids(store, k.Obs, sort=[SortKey(None, False, "_lastUpdated")]) == ["b", "c", "a"]
    assert ids(store, k.Obs, sort=[SortKey(None, True, "_lastUpdated")]) == ["a", "c", "b"]
    two = [SortKey(param(k.Obs, "t", "token"), True), SortKey(param(k.Obs, "q", "quantity"), True)]
    assert ids(store, k.Obs, sort=two) == ["b", "a", "c"]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_keyset_pages_cover_every_match_once_with_ties_and_nulls(store, descending, size):
    k = Kinds()
    values = {"a": "3", "b": "1", "c": "3", "d": None, "e": "2", "f": None, "g": "3", "h": "1.5"}
    for name, value in values.items():
        put(store, k.Obs, name, [number_row("n", value, value)] if value else [])
    sort = [SortKey(param(k.Obs, "n", "number"), descending)]
    expected = ids(store, k.Obs, sort=sort)
    assert expected[-2:] == ["d", "f"]  # no value: last both ways, then by id
    pages = _pages(store, k.Obs, sort, size)
    assert [row for page in pages for row in page] == expected
    assert all(len(page) == size for page in pages[:-1])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_resources_with_several_and_repeated_values_appear_once_in_sort_order(store, descending, size):
    """A resource sorts by its lowest value ascending and its highest descending, once, even when
    that extreme value is held twice (PostgreSQL reads such pages from the index rows, where the
    resource shows up once per extreme row)."""
    k = Kinds()
    values = {"a": [3, 1, 1], "b": [2, 2], "c": [5, 0, 5], "d": [], "e": [4], "f": [1, 5, 5, 0]}
    for name, numbers in values.items():
        put(store, k.Obs, name, [number_row("n", str(n), str(n)) for n in numbers])
    extreme = {name: (max(ns) if descending else min(ns)) for name, ns in values.items() if ns}
    valued = sorted(extreme, key=lambda name: ((-1 if descending else 1) * extreme[name], name))
    expected = valued + ["d"]
    sort = [SortKey(param(k.Obs, "n", "number"), descending)]
    assert ids(store, k.Obs, sort=sort) == expected
    pages = _pages(store, k.Obs, sort, size)
    assert [row for page in pages for row in page] == expected
    assert all(len(page) == size for page in pages[:-1])
    # and back: each page before the first row of the last one read, to the start
    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        last = uow.search(k.Obs, (), sort, size, None)
        while len(last) == size:
            more = uow.search(k.Obs, (), sort, size, decode_keyset(encode_keyset(last[-1].keyset)))
            if not more:
                break
            last = more
        backwards, first = [row.id for row in last], last[0]
        while True:
            key = decode_keyset(encode_keyset(first.keyset))
            before = uow.search(k.Obs, (), sort, size, key, backwards=True)
            if not before:
                break
            backwards = [row.id for row in reversed(before)] + backwards
            first = before[-1]
    assert backwards == expected


def test_keyset_paging_under_concurrent_writes(store):
    """Rows written between two page requests never shift the others: nothing is served twice
    and nothing that stayed put is skipped."""
    k = Kinds()
    for name in ("b", "d", "f", "h"):
        put(store, k.Obs, name, [string_row("s", name)])
    sort = [SortKey(param(k.Obs, "s", "string"), False)]
    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        first = uow.search(k.Obs, [], sort, 2)
    assert [row.id for row in first] == ["b", "d"]
    assert first[-1].keyset == ("d", k.Obs, "d")
    put(store, k.Obs, "a", [string_row("s", "a")])  # before the cursor: not on later pages
    put(store, k.Obs, "e", [string_row("s", "e")])  # after it: appears
    with store.unit_of_work(EVERYONE) as uow:  # `b` (already served) and `f` are deleted meanwhile
        for name in ("b", "f"):
            assert uow.replace(StoredVersion(k.Obs, name, 2, MOMENT, True, None, "DELETE"), 1)
            uow.replace_index(k.Obs, name, [])
    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        rest = uow.search(k.Obs, [], sort, 10, decode_keyset(encode_keyset(first[-1].keyset)))
    assert [row.id for row in rest] == ["e", "h"]


def test_keyset_tokens_round_trip_and_bad_ones_are_400(store):
    key = (datetime(2020, 1, 2, 3, 4, 5, 6), 1.5, None, "Patient", "x")
    assert decode_keyset(encode_keyset(key)) == key
    for bad in ("", "!!!", encode_keyset(["Patient"])[:-2] + "xx"):
        with pytest.raises(Invalid) as caught:
            decode_keyset(bad)
        assert caught.value.error_code == "search-page-token-invalid"
    k = Kinds()
    sort = [SortKey(param(k.Obs, "n", "number"), False)]
    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        for after in (("Patient", "x"), ("text", k.Obs, "x"), (1.0, k.Obs)):
            with pytest.raises(Invalid):
                uow.search(k.Obs, [], sort, 10, after)
        assert uow.search(k.Obs, [], sort, 10, (None, k.Obs, "x")) == []


def test_count_and_system_search_over_types(store):
    k = Kinds()
    code = Token(None, "shared", False)
    put(store, k.Obs, "o1", [token_row("code", None, "shared")])
    put(store, k.Obs, "o2", [token_row("code", None, "other")])
    put(store, k.Cond, "c1", [token_row("code", None, "shared")])
    put(store, k.Cond, "c2", [token_row("code", None, "shared")], deleted=True)
    put(store, k.Proc, "p1", [token_row("code", None, "shared")])
    clause = ParamClause(param(k.Obs, "code", "token"), (code,))
    assert ids(store, None, clause, types=(k.Obs, k.Cond)) == ["c1", "o1"]  # by type, then id
    assert ids(store, None, IdClause(("o2", "p1")), types=(k.Obs, k.Cond, k.Proc)) == ["o2", "p1"]
    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        assert uow.count(k.Obs, [clause]) == 1
        assert uow.count(k.Obs, []) == 2
        assert uow.count(None, [clause], types=(k.Obs, k.Cond, k.Proc)) == 3
        pages = uow.search(None, [clause], [SortKey(None, True, "_id")], 2, None, (k.Obs, k.Cond, k.Proc))
        assert [row.id for row in pages] == ["p1", "o1"]


def test_include_and_revinclude_steps(store):
    k = Kinds()
    put(store, k.Pat, "p1")
    put(store, k.Pat, "p2")
    put(store, k.Pat, "dead", deleted=True)
    put(store, k.Prac, "dr")
    put(store, k.Obs, "o1", [reference_row("subject", k.Pat, "p1"), reference_row("performer", k.Prac, "dr")])
    put(store, k.Obs, "o2", [reference_row("subject", k.Pat, "p2"), reference_row("subject", k.Pat, "dead")])
    put(store, k.Obs, "o3", [reference_row("subject", k.Pat, "p1")], deleted=True)
    put(store, k.Prov, "v1", [reference_row("target", k.Obs, "o1"), reference_row("target", k.Pat, "p2")])
    observations = [(k.Obs, "o1"), (k.Obs, "o2")]

    def keys(found):  # type: ignore[no-untyped-def]
        return [(row.resource_type, row.id) for row in found]

    with store.unit_of_work(EVERYONE, read_only=True) as uow:
        assert keys(uow.referenced(observations, ["subject"])) == [(k.Pat, "p1"), (k.Pat, "p2")]
        assert keys(uow.referenced(observations, None)) == [(k.Pat, "p1"), (k.Pat, "p2"), (k.Prac, "dr")]
        assert keys(uow.referenced(observations, None, k.Prac)) == [(k.Prac, "dr")]
        assert keys(uow.referenced([], None)) == []
        patients = [(k.Pat, "p1"), (k.Pat, "p2")]
        assert keys(uow.referencing(patients, k.Obs, ["subject"])) == [(k.Obs, "o1"), (k.Obs, "o2")]
        assert keys(uow.referencing([(k.Pat, "p2"), (k.Obs, "o1")], None, None)) == [(k.Obs, "o2"), (k.Prov, "v1")]
        assert keys(uow.referencing([(k.Obs, "o1")], k.Prov, ["target"])) == [(k.Prov, "v1")]
        assert keys(uow.referencing([(k.Obs, "o1")], k.Prov, ["other"])) == []
    with store.unit_of_work(NOBODY, read_only=True) as uow:
        assert uow.referenced(observations, None) == []
        assert uow.referencing([(k.Pat, "p1")], None, None) == []


def test_a_restricted_caller_finds_and_counts_nothing(store):
    k = Kinds()
    put(store, k.Obs, "o1", [token_row("code", None, "x")])
    assert ids(store, k.Obs) == ["o1"]
    assert ids(store, k.Obs, visibility=NOBODY) == []
    with store.unit_of_work(NOBODY, read_only=True) as uow:
        assert uow.count(k.Obs, []) == 0
        assert uow.match(k.Obs, [IdClause(("o1",))], 2) == []
