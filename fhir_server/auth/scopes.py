"""SMART on FHIR scopes (SMART App Launch 2.x, scopes-and-launch-context.html).

A resource scope is `<context>/<resource type or *>.<permissions>[?<search query>]`:

- context `patient` (the launch patient's compartment), `user` (what the user may see) or
  `system` (what the client may see, for backend services);
- permissions in v1 form (`read`, `write`, `*`) or as v2 letters in the order `cruds`:
  c create; r read, vread and instance history; u update and patch; d delete; s search and
  type/system history. v1 `read` is `rs`, `write` is `cud`, `*` is `cruds`;
- a granular query (`patient/Observation.rs?category=...|vital-signs`) narrows the grant to the
  resources matching that search (v2 only, for one resource type).

Other scopes (`openid`, `fhirUser`, `profile`, `launch`, `launch/patient`, `launch/encounter`,
`offline_access`, `online_access`) carry no data access and are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([A-Za-z*]+)(?:\?(.*))?$")
_V2_LETTERS = re.compile(r"^c?r?u?d?s?$")
IDENTITY_SCOPES = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"}
)


class ScopeError(ValueError):
    """A resource scope that does not follow the SMART syntax."""


@dataclass(frozen=True)
class ResourceScope:
    context: str  # patient | user | system
    resource_type: str  # a type name or "*"
    letters: frozenset[str]  # a subset of "cruds"
    query: tuple[tuple[str, str], ...] = ()  # a granular scope's search parameters
    text: str = ""

    def permits(self, resource_type: str | None, letter: str) -> bool:
        """Whether this scope grants `letter` on `resource_type` (None: some type, as for a
        system-level search whose types the grant narrows later)."""
        return letter in self.letters and (resource_type is None or self.resource_type in ("*", resource_type))

    def covers(self, other: ResourceScope) -> bool:
        """Whether granting this scope already grants everything `other` asks for (what a
        client's allowed scopes or an earlier grant may be widened to, and no further)."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and other.letters <= self.letters
            and (not self.query or self.query == other.query)
        )


def parse_scope(text: str) -> ResourceScope | None:
    """A resource scope, or None for a scope that grants no data access (launch, openid...);
    a malformed resource scope raises ScopeError."""
    match = _RESOURCE_SCOPE.match(text)
    if match is None:
        if "/" in text and text.split("/", 1)[0] in CONTEXTS:
            raise ScopeError(f"'{text}' is not a valid SMART resource scope")
        return None
    context, resource_type, permissions, query = match.groups()
    letters = _V1.get(permissions)
    if letters is None:
        if not permissions or not _V2_LETTERS.match(permissions):
            raise ScopeError(f"'{text}': permissions must be read, write, * or letters of 'cruds' in that order")
        letters = permissions
    elif query is not None:
        raise ScopeError(f"'{text}': a search query needs v2 permissions (letters of 'cruds')")
    parameters: tuple[tuple[str, str], ...] = ()
    if query is not None:
        if resource_type == "*":
            raise ScopeError(f"'{text}': a search query needs one resource type, not '*'")
        parameters = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        if not parameters:
            raise ScopeError(f"'{text}': the search query is empty")
    return ResourceScope(context, resource_type, frozenset(letters), parameters, text)


def parse_scopes(scope: str) -> tuple[list[ResourceScope], set[str]]:
    """The resource scopes and the other scopes of a space-separated scope string."""
    resources: list[ResourceScope] = []
    others: set[str] = set()
    for text in scope.split():
        parsed = parse_scope(text)
        if parsed is None:
            others.add(text)
        else:
            resources.append(parsed)
    return resources, others


def split(scope: str | None) -> list[str]:
    """Space-separated scopes (RFC 6749 section 3.3), repeats dropped, order kept."""
    return list(dict.fromkeys((scope or "").split()))


def within(requested: str, allowed: Iterable[str]) -> bool:
    """Whether the scope `requested` is covered by some scope of `allowed` (what a client may be
    granted, or an earlier grant): resource scopes by `ResourceScope.covers`, others by equality."""
    allowed = list(allowed)
    try:
        wanted = parse_scope(requested)
    except ScopeError:
        return False
    if wanted is None:
        return requested in allowed
    return any(scope.covers(wanted) for scope in parsed_resource_scopes(allowed))


def parsed_resource_scopes(texts: Iterable[str]) -> Iterator[ResourceScope]:
    for text in texts:
        try:
            scope = parse_scope(text)
        except ScopeError:
            continue
        if scope is not None:
            yield scope


def refused(requested: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The requested scopes that `allowed` does not cover."""
    allowed = list(allowed)
    return [scope for scope in requested if not within(scope, allowed)]


def context_of(scope: str) -> str | None:
    """`patient`, `user` or `system` for a well-formed resource scope, else None."""
    try:
        parsed = parse_scope(scope)
    except ScopeError:
        return None
    return parsed.context if parsed is not None else None
