"""FHIR JSON on the wire (R4 json.html).

Decimals keep their precision: they are parsed into `Decimal` and written back with the digits
they arrived with ("1.50" stays 1.50), as json.html asks. Serialisation uses orjson, which is
several times faster than the standard library and lets a Decimal be emitted as its own text.
Nesting depth is checked before parsing so a hostile document cannot exhaust the stack.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import Any

import orjson

from fhir_server.errors import Invalid, Issue

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEP = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}
_NOT_BRACKETS = bytes(code for code in range(256) if code not in _STEP)


def _decimal_fragment(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def nesting_depth(body: bytes, limit: int) -> int:
    """Deepest bracket nesting outside string literals, exact whenever it could exceed `limit`."""
    openings = body.count(b"{") + body.count(b"[")
    if openings <= limit:
        return openings  # an upper bound, and already within the limit: no need to scan
    brackets = _STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse(body: bytes | str, max_depth: int = 64) -> Any:
    """Parse JSON text; errors name the line and column."""
    raw = body.encode() if isinstance(body, str) else body
    if nesting_depth(raw, max_depth) > max_depth:
        raise Invalid(
            f"JSON is nested deeper than the limit of {max_depth} levels",
            "json-too-deep",
            issues=[Issue(f"JSON is nested deeper than {max_depth} levels", "json-too-deep", "too-costly")],
        )
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" at line {exc.lineno}, column {exc.colno}"
        message = f"Malformed JSON{where}: {getattr(exc, 'msg', str(exc))}"
        raise Invalid(message, "json-malformed", issues=[Issue(message, "json-malformed", "structure")]) from None


def dumps(value: Any, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_decimal_fragment, option=option)
