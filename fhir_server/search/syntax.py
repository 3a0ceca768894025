"""Search value syntax shared by every parameter type (R4 search.html#escaping, #errors).

`,` separates OR-ed values, `|` the parts of a token or quantity, `$` the parts of a composite; a
literal one is written `\\,` `\\|` `\\$`, and a literal backslash `\\\\`. Any other backslash is
illegal (search.html#escaping: "The parameter value `xx\\xx` is illegal").

`Problem` is how the parsers report one bad parameter; query.py turns each into an `Issue` whose
`expression` is the parameter name as the client gave it.
"""

from __future__ import annotations

UNKNOWN = "search-parameter-unknown"
UNSUPPORTED = "search-parameter-unsupported"
MODIFIER = "search-modifier-unsupported"
VALUE = "search-value-invalid"

_ESCAPABLE = frozenset("\\,$|")


class Problem(Exception):
    """One unusable parameter: `error_code` is one of the four codes above."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped; the parts keep their escapes."""
    parts: list[str] = []
    start = index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] not in _ESCAPABLE:
                raise Problem(VALUE, f"'{text}' has a backslash that escapes nothing (use \\\\ for a backslash)")
            index += 2
            continue
        if char == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def unescape(text: str) -> str:
    """The literal value: `\\,` `\\$` `\\|` `\\\\` become `,` `$` `|` `\\`."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] not in _ESCAPABLE:
                raise Problem(VALUE, f"'{text}' has a backslash that escapes nothing (use \\\\ for a backslash)")
            out.append(text[index + 1])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def or_values(raw: str) -> list[str]:
    """The OR-ed values of one parameter occurrence, still escaped; an empty one is an error."""
    values = split_unescaped(raw, ",")
    if any(not value for value in values):
        raise Problem(VALUE, f"'{raw}' has an empty value between commas")
    return values
