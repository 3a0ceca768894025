"""A parser for the subset of FHIRPath that search parameter expressions use (R4 fhirpath.html).

The official R4 expressions (searchparameter.html, `SearchParameter.expression`) are paths,
unions, type casts (`x as T`, `x.as(T)`, `x.ofType(T)`), `where(...)` filters with simple
equality or `resolve() is T`, an indexer (`entry[0]`), `exists()` and one `and`. This module
turns such an expression into a small syntax tree, following the operator precedence of
fhirpath.html#operator-precedence (path and indexer, then `is`/`as`, then `|`, then `=`/`!=`,
then `and`). Anything outside the subset raises `Unsupported`, and the caller falls back to a
full FHIRPath engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class Unsupported(Exception):
    """The expression uses FHIRPath outside the compiled subset."""


@dataclass(frozen=True)
class Member:
    """`base.name` (base None: a name at the start of a path, read against the focus)."""

    base: Node | None
    name: str


@dataclass(frozen=True)
class Call:
    base: Node | None
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class TypeOp:
    operator: str  # is | as
    operand: Node
    type_name: str


@dataclass(frozen=True)
class Index:
    base: Node
    index: int


@dataclass(frozen=True)
class Binary:
    operator: str  # | = != and
    left: Node
    right: Node


@dataclass(frozen=True)
class Literal:
    value: str | bool | int
    type_name: str


@dataclass(frozen=True)
class This:
    pass


Node = Member | Call | TypeOp | Index | Binary | Literal | This

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>\d+(?!\.\d))|(?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<var>\$this)|(?P<op>!=|[.()\[\]|=,]))"
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if not match:
            raise Unsupported(f"cannot read {expression[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.position = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise Unsupported(f"expected {value!r}, found {token[1]!r}")
        self.position += 1
        return token

    def parse(self) -> Node:
        node = self.logical()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def logical(self) -> Node:
        node = self.equality()
        while self.peek() == ("ident", "and"):
            self.take()
            node = Binary("and", node, self.equality())
        if self.peek()[1] in ("or", "xor", "implies"):
            raise Unsupported(self.peek()[1])
        return node

    def equality(self) -> Node:
        node = self.union()
        if self.peek()[1] in ("=", "!="):
            operator = self.take()[1]
            node = Binary(operator, node, self.union())
        return node

    def union(self) -> Node:
        node = self.typed()
        while self.peek()[1] == "|":
            self.take()
            node = Binary("|", node, self.typed())
        return node

    def typed(self) -> Node:
        node = self.postfix()
        while self.peek() in (("ident", "as"), ("ident", "is")):
            operator = self.take()[1]
            node = TypeOp(operator, node, self.type_name())
        return node

    def type_name(self) -> str:
        kind, name = self.take()
        if kind != "ident":
            raise Unsupported(f"expected a type name, found {name!r}")
        if self.peek()[1] == ".":  # FHIR.Patient, System.String
            self.take()
            namespace, name = name, self.take()[1]
            if namespace != "FHIR":
                raise Unsupported(f"type {namespace}.{name}")
        return name

    def postfix(self) -> Node:
        node = self.term()
        while self.peek()[1] in (".", "["):
            if self.take()[1] == "[":
                kind, number = self.take()
                if kind != "number":
                    raise Unsupported("only literal indexes are compiled")
                self.take("]")
                node = Index(node, int(number))
            else:
                node = self.invocation(node)
        return node

    def invocation(self, base: Node | None) -> Node:
        kind, name = self.take()
        if kind != "ident":
            raise Unsupported(f"unexpected {name!r}")
        name = name.strip("`")
        if self.peek()[1] != "(":
            return Member(base, name)
        self.take("(")
        if name in ("as", "is", "ofType"):
            args: tuple[Node, ...] = (Literal(self.type_name(), "type"),)
        else:
            args = ()
            while self.peek()[1] != ")":
                args += (self.logical(),)
                if self.peek()[1] == ",":
                    self.take()
        self.take(")")
        return Call(base, name, args)

    def term(self) -> Node:
        kind, value = self.peek()
        if kind == "string":
            self.take()
            return Literal(_unquote(value), "string")
        if kind == "number":
            self.take()
            return Literal(int(value), "integer")
        if kind == "var":
            self.take()
            return This()
        if (kind, value) == ("op", "("):
            self.take()
            node = self.logical()
            self.take(")")
            return node
        if kind == "ident" and value in ("true", "false"):
            self.take()
            return Literal(value == "true", "boolean")
        if kind == "ident":
            return self.invocation(None)
        raise Unsupported(f"unexpected {value!r}")


def parse(expression: str) -> Node:
    """The syntax tree of `expression`; raises Unsupported outside the subset."""
    return _Parser(expression).parse()
