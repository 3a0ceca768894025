"""Value set contents and code system hierarchies from resources (fhir_server.search.terminology;
R4 valueset.html#compose, codesystem.html#hierarchy)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search.terminology import Coding, Hierarchy, Unresolvable, hierarchy, references, value_set_codes

S = "http://example.org/cs"
OTHER = "http://example.org/other"

# root
# +-- animal
# |   +-- mammal (property status=retired)
# |   |   +-- dog
# |   |   +-- cat (property status=active)
# |   +-- bird
# +-- plant
# fish: not nested, but `parent` animal (a property link)
CODE_SYSTEM: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": S,
    "concept": [
        {
            "code": "root",
            "concept": [
                {
                    "code": "animal",
                    "concept": [
                        {
                            "code": "mammal",
                            "property": [{"code": "status", "valueCode": "retired"}],
                            "concept": [
                                {"code": "dog"},
                                {"code": "cat", "property": [{"code": "status", "valueCode": "active"}]},
                            ],
                        },
                        {"code": "bird"},
                    ],
                },
                {"code": "plant"},
            ],
        },
        {"code": "fish", "property": [{"code": "parent", "valueCode": "animal"}]},
    ],
}


def known() -> Hierarchy:
    return hierarchy(CODE_SYSTEM)


def systems(url: str) -> Hierarchy:
    if url == S:
        return known()
    raise Unresolvable(f"no {url}", "search-codesystem-unknown")


def no_value_sets(url: str) -> frozenset[Coding]:
    raise Unresolvable(f"no {url}", "search-valueset-unknown")


def codes(value_set: dict[str, Any], value_sets: Any = no_value_sets) -> set[str]:
    return {code for _, code in value_set_codes(value_set, systems, value_sets)}


def include(*parts: dict[str, Any], exclude: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": list(parts)}
    if exclude:
        compose["exclude"] = list(exclude)
    return {"resourceType": "ValueSet", "compose": compose}


def rule(prop: str, op: str, value: str) -> dict[str, Any]:
    return {"system": S, "filter": [{"property": prop, "op": op, "value": value}]}


def test_hierarchy_from_nesting_and_parent_properties() -> None:
    tree = known()
    assert tree.codes == ("root", "animal", "mammal", "dog", "cat", "bird", "plant", "fish")
    assert tree.below("animal") == {"animal", "mammal", "dog", "cat", "bird", "fish"}
    assert tree.below("animal", include_self=False) == {"mammal", "dog", "cat", "bird", "fish"}
    assert tree.below("dog") == {"dog"}
    assert tree.above("cat") == {"cat", "mammal", "animal", "root"}
    assert tree.above("fish") == {"fish", "animal", "root"}
    assert tree.below("unknown") == {"unknown"}


def test_cycles_terminate() -> None:
    looped = hierarchy(
        {
            "url": S,
            "concept": [{"code": "a", "property": [{"code": "parent", "valueCode": "b"}], "concept": [{"code": "b"}]}],
        }
    )
    assert looped.below("a") == {"a", "b"}
    assert looped.below("a", include_self=False) == {"b"}


def test_expansion_wins_and_is_flattened() -> None:
    value_set = {
        "expansion": {
            "contains": [
                {"system": S, "code": "dog"},
                {"abstract": True, "display": "group", "contains": [{"system": OTHER, "code": "x"}]},
                {"code": "no-system"},
            ]
        },
        "compose": {"include": [{"system": S, "concept": [{"code": "cat"}]}]},
    }
    assert value_set_codes(value_set, systems, no_value_sets) == {(S, "dog"), (OTHER, "x"), (None, "no-system")}
    assert references(value_set) == (set(), set())


def test_compose_concepts_whole_systems_and_excludes() -> None:
    listed = include({"system": OTHER, "concept": [{"code": "x"}, {"code": "y"}]})
    assert value_set_codes(listed, systems, no_value_sets) == {(OTHER, "x"), (OTHER, "y")}
    assert references(listed) == (set(), set())  # an explicit list needs no CodeSystem
    whole = include({"system": S}, exclude=({"system": S, "concept": [{"code": "root"}, {"code": "plant"}]},))
    assert codes(whole) == {"animal", "mammal", "dog", "cat", "bird", "fish"}
    assert references(whole) == (set(), {S})
    with pytest.raises(Unresolvable) as caught:
        codes(include({"system": OTHER}))
    assert caught.value.error_code == "search-codesystem-unknown"


@pytest.mark.parametrize(
    ("prop", "op", "value", "expected"),
    [
        ("concept", "is-a", "mammal", {"mammal", "dog", "cat"}),
        ("concept", "descendent-of", "mammal", {"dog", "cat"}),
        ("concept", "is-not-a", "animal", {"root", "plant"}),
        ("concept", "generalizes", "dog", {"dog", "mammal", "animal", "root"}),
        ("concept", "=", "bird", {"bird"}),
        ("code", "in", "bird, plant", {"bird", "plant"}),
        ("concept", "not-in", "root,animal,mammal,dog,cat", {"bird", "plant", "fish"}),
        ("status", "=", "retired", {"mammal"}),
        ("status", "in", "retired,active", {"mammal", "cat"}),
        ("status", "exists", "true", {"mammal", "cat"}),
        ("parent", "=", "animal", {"fish"}),
    ],
)
def test_filters(prop: str, op: str, value: str, expected: set[str]) -> None:
    assert codes(include(rule(prop, op, value))) == expected


def test_filters_combine_and_unsupported_ones_fail() -> None:
    both = {
        "system": S,
        "filter": [rule("concept", "is-a", "animal")["filter"][0], rule("status", "exists", "true")["filter"][0]],
    }
    assert codes(include(both)) == {"mammal", "cat"}
    with pytest.raises(Unresolvable) as caught:
        codes(include(rule("display", "regex", ".*")))
    assert caught.value.error_code == "search-valueset-unexpandable"
    with pytest.raises(Unresolvable):
        codes(include({"system": S, "filter": [{"property": "concept", "op": "is-a"}]}))


def test_imported_value_sets_intersect() -> None:
    mammals = frozenset({(S, "mammal"), (S, "dog"), (S, "cat")})
    pets = frozenset({(S, "dog"), (S, "cat"), (OTHER, "goldfish")})
    known_sets = {"http://vs/mammals": mammals, "http://vs/pets": pets}

    def lookup(url: str) -> frozenset[Coding]:
        return known_sets[url]

    imported = include({"valueSet": ["http://vs/mammals", "http://vs/pets"]})
    assert value_set_codes(imported, systems, lookup) == {(S, "dog"), (S, "cat")}
    assert references(imported) == ({"http://vs/mammals", "http://vs/pets"}, set())
    narrowed = include(
        {"system": S, "filter": rule("concept", "is-a", "mammal")["filter"], "valueSet": ["http://vs/pets"]}
    )
    assert codes(narrowed, lookup) == {"dog", "cat"}
    union = include({"valueSet": ["http://vs/pets"]}, {"system": OTHER, "concept": [{"code": "x"}]})
    assert value_set_codes(union, systems, lookup) == {(S, "dog"), (S, "cat"), (OTHER, "goldfish"), (OTHER, "x")}
