"""Cases of the search conformance matrix (test_search_matrix.py), generated from the registry.

For every search parameter of the matrix types (`search_params(type)`) one *subject* resource is
prepared that has a value for it: the official example of that type whose extracted index rows
(`fhir_server.search.extract.index_rows`) suit the parameter best, or, when no example has a value,
a minimal valid resource built from the element definitions (model/definitions.py) with a value
placed at the parameter's FHIRPath path. From the subject's index rows for the parameter, a
matching and a non-matching query value is derived for each form, modifier and prefix that applies
to the parameter's type (R4 search.html#ptypes, #modifiers, #prefix). Which value matches is
decided here from the rules of search.html, written independently of the server's SQL.

Placeholders, replaced at run time: `zzphNNNNNN` stands for the server-assigned id of an entry of
the type's transaction (subjects, reference targets, value sets, the blank resource) and `zzrun`
for a token unique to one load, so that every marker tag and canonical URL is new on a shared
database. Local references of the examples are rewritten to point at minimal target resources
created in the same transaction, so that chained searches have something to reach.

Per type there is also one *blank* resource (only what the definitions require), the subject of
the `:missing=true` cases of every parameter it has no value for.
"""

from __future__ import annotations

import copy
import html
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from fhir_server.model.definitions import ElementInfo, elements, is_primitive
from fhir_server.model.schema import resource_types, schema_definitions
from fhir_server.search.extract import index_rows
from fhir_server.search.params import SearchParam
from fhir_server.search.protected import CONTACT, protection
from fhir_server.search.registry import official_params as search_params  # the matrix covers the R4 set
from tests.conftest import EXAMPLES

TYPES = ("Patient", "Consent", "Appointment", "Coverage", "AllergyIntolerance", "Observation")
MARK = "urn:fhir-server:test:search-matrix"
RUN = "zzrun"
PLACEHOLDER = re.compile(r"zzph[0-9]{6}")
OTHER_SYSTEM = "http://example.org/fhir/CodeSystem/matrix-unrelated"
SYNTH_SYSTEM = "http://example.org/fhir/CodeSystem/matrix"
UCUM = "http://unitsofmeasure.org"
NO_MATCH = "zz-nomatch"
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

# UCUM conversions the canonical-unit cases use (search.html#quantity): code -> (other code, factor).
CONVERSIONS = {
    "kg": ("g", Decimal(1000)),
    "g": ("mg", Decimal(1000)),
    "mg": ("g", Decimal("0.001")),
    "cm": ("m", Decimal("0.01")),
    "m": ("cm", Decimal(100)),
    "mm": ("cm", Decimal("0.1")),
    "L": ("mL", Decimal(1000)),
    "mL": ("L", Decimal("0.001")),
    "min": ("s", Decimal(60)),
    "h": ("min", Decimal(60)),
}


@dataclass
class Entry:
    """One resource of a type's transaction. `marker`: the code of the `_tag` (system MARK) that
    restricts a case's search to this resource; None: restrict by `_id` (the blank resource)."""

    placeholder: str
    resource: dict[str, Any]
    role: str  # subject | target | blank | valueset
    marker: str | None = None


@dataclass(frozen=True)
class Case:
    """`GET [type]?{name}={value}&<restriction to subject>` returns the subject (match) or nothing.
    `dynamic` "lastUpdated": `value` is only the prefix; the date is derived at run time from the
    subject's meta.lastUpdated (chosen so that it matches or not)."""

    id: str
    resource_type: str
    subject: str
    name: str
    value: str
    match: bool
    xfail: str | None = None
    dynamic: str | None = None
    lenient: bool = False
    status: int = 200  # 400: the parameter must be rejected (strict handling)


@dataclass
class Plan:
    resource_type: str
    entries: dict[str, Entry] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)  # original reference -> placeholder
    counter: int = 0

    def placeholder(self) -> str:
        self.counter += 1
        return f"zzph{TYPES.index(self.resource_type) * 100_000 + self.counter:06d}"

    def add(self, case_id: str, subject: str, name: str, value: str, match: bool, **extra: Any) -> None:
        taken = {case.id for case in self.cases}
        unique, n = case_id, 2
        while unique in taken:
            unique, n = f"{case_id}-{n}", n + 1
        self.cases.append(Case(unique, self.resource_type, subject, name, value, match, **extra))


# --- escaping and small helpers ------------------------------------------------------------------


def esc(text: str) -> str:
    """A literal search value (search.html#escaping)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def normal(text: str) -> str:
    """Case, accents and repeated whitespace ignored (search.html#string), written independently."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(plain.casefold().split())


def rows_of(resource: dict[str, Any], code: str) -> list[dict[str, Any]]:
    """The index rows the extractor produces for parameter `code` (values only)."""
    return [row.values for row in index_rows(resource) if row.param == code]


@cache
def examples(resource_type: str) -> tuple[tuple[str, str], ...]:
    """(file name, JSON text) of the official examples of a type, sorted by name."""
    return tuple((p.name, p.read_text()) for p in sorted(EXAMPLES.glob(f"{resource_type}-*.json")))


# --- minimal resources and values from the element definitions ------------------------------------


def _schema_name(parent: str, name: str) -> str | None:
    """The JSON schema definition of a backbone element (for its enums), found through its parent."""
    prop = schema_definitions().get(parent, {}).get("properties", {}).get(name, {})
    ref = (prop.get("items") or prop).get("$ref", "")
    return ref.rsplit("/", 1)[-1] or None


def _enum(schema: str | None, name: str) -> list[str]:
    prop = schema_definitions().get(schema or "", {}).get("properties", {}).get(name, {})
    return list((prop.get("items") or prop).get("enum") or [])


def _target_of(owner: str, name: str) -> str:
    """A target type of a Reference element: the targets of the search parameter on that path."""
    for param in search_params(owner).values():
        if param.type == "reference" and param.expression == f"{owner}.{name}" and param.targets:
            return "Patient" if "Patient" in param.targets else param.targets[0]
    return "Patient"


class Synth:
    """Values of any FHIR type: `hint` makes them recognisable, `reference` makes a Reference."""

    def __init__(self, hint: str, reference: Callable[[str], str] | None = None, system: bool = True) -> None:
        self.hint = hint
        self.reference = reference or (lambda kind: f"{kind}/matrix-dangling")
        self.system = system  # False: codings and identifiers without a system, identifiers with a type text

    def value(self, info: ElementInfo, schema: str | None, owner: str, where: dict[str, str]) -> Any:
        kind = info.type_code
        hint = self.hint
        if is_primitive(kind):
            enum = _enum(schema, info.name)
            return where.get(info.name) or self.primitive(kind, enum)
        if kind == "Reference":
            return {"reference": self.reference(where.get("resolve") or _target_of(owner, info.name))}
        system = {"system": SYNTH_SYSTEM} if self.system else {}
        if kind == "Coding":
            return {**system, "code": f"matrix-{hint}", "display": f"Matrix {hint} display"}
        if kind == "CodeableConcept":
            coding = {**system, "code": f"matrix-{hint}", "display": f"Matrix {hint} display"}
            return {"coding": [coding], "text": f"Matrix {hint} text"}
        if kind == "Identifier":
            if self.system:
                return {"system": f"{SYNTH_SYSTEM}/identifier", "value": f"matrix-{hint}"}
            return {"type": {"text": f"Matrix {hint} type"}, "value": f"matrix-{hint}"}
        if kind == "ContactPoint":
            return {"system": where.get("system", "phone"), "value": f"matrix-{hint}"}
        if kind == "HumanName":
            return {"family": f"Matrix{hint.title()}", "given": ["Synth"]}
        if kind == "Address":
            return {"line": [f"1 Matrix {hint} St"], "city": "Matrixville", "postalCode": "1234", "country": "NZ"}
        if kind == "Period":
            return {"start": "2021-03-04", "end": "2021-03-05"}
        if kind in ("Quantity", "SimpleQuantity", "Age", "Duration", "Distance", "Count"):
            return {"value": Decimal("7.5"), "unit": "mg", "system": UCUM, "code": "mg"}
        if kind in ("BackboneElement", "Element") or info.path:
            return self.required(info.children_key, _schema_name(schema or owner, info.name), owner)
        return self.required(kind, kind, kind) or {"id": f"matrix-{hint}"}

    def primitive(self, kind: str, enum: list[str]) -> Any:
        if enum:
            return enum[0]
        return {
            "boolean": True,
            "integer": 7,
            "positiveInt": 7,
            "unsignedInt": 7,
            "decimal": Decimal("7.5"),
            "date": "2021-03-04",
            "dateTime": "2021-03-04T05:06:07Z",
            "instant": "2021-03-04T05:06:07Z",
            "time": "05:06:07",
            "uri": f"http://example.org/fhir/matrix/{self.hint}",
            "url": f"http://example.org/fhir/matrix/{self.hint}",
            "canonical": f"http://example.org/fhir/StructureDefinition/matrix-{self.hint}",
            "oid": "urn:oid:1.2.3.4",
            "uuid": "urn:uuid:9c3e6f3a-0d6a-4a5e-9f5e-0a0b0c0d0e0f",
            "id": f"matrix-{self.hint}",
            "base64Binary": "bWF0cml4",
            "code": f"matrix-{self.hint}",
        }.get(kind, f"Matrix {self.hint}")

    def required(self, key: str, schema: str | None, owner: str) -> dict[str, Any]:
        """Every element with min >= 1 (the first type of a required choice), recursively."""
        node: dict[str, Any] = {}
        seen_choices: set[str] = set()
        for info in elements(key).values():
            if info.min < 1 or (info.choice and info.choice in seen_choices):
                continue
            if info.choice:
                seen_choices.add(info.choice)
            value = self.value(info, schema, owner if info.path else owner, {})
            node[info.name] = [value] if info.is_array else value
        return node


def minimal(resource_type: str, hint: str, reference: Callable[[str], str] | None = None) -> dict[str, Any]:
    body = Synth(hint, reference).required(resource_type, resource_type, resource_type)
    return {"resourceType": resource_type, **body}


_CAST = re.compile(r"^\((.*) as ([A-Za-z]+)\)$")
_WHERE = re.compile(r"\.where\(([^()]*(?:\(\))?[^()]*)\)")


def _parse_path(expression: str, resource_type: str) -> tuple[list[str], str | None, dict[str, str]]:
    """(element names, type cast, where-constraints) of a simple search expression's first part."""
    part = expression.split(" | ")[0].strip()
    cast = None
    match = _CAST.match(part)
    if match:
        part, cast = match.group(1), match.group(2)
    where: dict[str, str] = {}
    for condition in _WHERE.findall(part):
        resolved = re.fullmatch(r"resolve\(\) is ([A-Za-z]+)", condition.strip())
        equal = re.fullmatch(r"([a-z]+)\s*=\s*'([^']*)'", condition.strip())
        if resolved:
            where["resolve"] = resolved.group(1)
        elif equal:
            where[equal.group(1)] = equal.group(2)
    part = _WHERE.sub("", part)
    steps = part.split(".")
    if steps[0] in (resource_type, "Resource", "DomainResource"):
        steps = steps[1:]
    return steps, cast, where


_PREFERRED = {
    "reference": "Reference",
    "date": "dateTime",
    "token": "CodeableConcept",
    "string": "string",
    "quantity": "Quantity",
    "uri": "uri",
    "number": "decimal",
}


def synthesize(param: SearchParam, plan: Plan, system: bool = True) -> tuple[dict[str, Any], str] | None:
    """A minimal resource with a value at the parameter's path and the FHIR type of that value, or
    None if the path is beyond this simple walk of the element definitions."""
    if not param.expression:
        return None
    steps, cast, where = _parse_path(param.expression, param.resource_type)
    if param.type == "reference" and param.targets and "resolve" not in where:
        where["resolve"] = "Patient" if "Patient" in param.targets else param.targets[0]
    hint = param.code.strip("_").replace("-", "")
    synth = Synth(hint, lambda kind: target_reference(plan, kind, f"synth-{param.code}"), system)
    resource = minimal(param.resource_type, hint)
    node: dict[str, Any] = resource
    key, schema = param.resource_type, param.resource_type
    for index, step in enumerate(steps):
        table = elements(key)
        options = [table[step]] if step in table else [i for i in table.values() if i.choice == step]
        if cast:
            options = [i for i in options if i.type_code.lower() == cast.lower()] or options
        preferred = [i for i in options if i.type_code == _PREFERRED.get(param.type)]
        if not options:
            return None
        info = (preferred or options)[0]
        for other in options:  # a choice takes one type only
            node.pop(other.name, None)
        if index == len(steps) - 1:
            value = synth.value(info, schema, param.resource_type, where)
            node[info.name] = [value] if info.is_array else value
            return resource, info.type_code
        if is_primitive(info.type_code):
            return None
        child_schema = _schema_name(schema, info.name) or info.type_code
        value = synth.required(info.children_key, child_schema, param.resource_type)  # with its required parts
        node[info.name] = [value] if info.is_array else value
        schema, key, node = child_schema, info.children_key, value
    return None


def target_marker(placeholder: str) -> str:
    """The tag code of a reference target (without the placeholder, which the server id replaces)."""
    return f"{RUN}-target-{placeholder.removeprefix('zzph')}"


def target_reference(plan: Plan, kind: str, original: str) -> str:
    """`Type/zzph...`: a minimal `kind` resource created in the same transaction (one per original)."""
    key = f"{kind}|{original}"
    if key not in plan.targets:
        placeholder = plan.placeholder()
        plan.targets[key] = placeholder
        target = minimal(kind, "target")
        target["meta"] = {"tag": [{"system": MARK, "code": target_marker(placeholder)}]}
        plan.entries[placeholder] = Entry(placeholder, target, "target")
    return f"{kind}/{plan.targets[key]}"


_LOCAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")


def rewrite_references(node: Any, plan: Plan) -> Any:
    """Local `Type/id` references pointed at targets created in the same transaction."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            match = _LOCAL.match(value) if key == "reference" and isinstance(value, str) else None
            if match and match.group(1) in resource_types() and not PLACEHOLDER.fullmatch(match.group(2)):
                out[key] = target_reference(plan, match.group(1), value)
            else:
                out[key] = rewrite_references(value, plan)
        return out
    if isinstance(node, list):
        return [rewrite_references(item, plan) for item in node]
    return node


def prepared(resource: dict[str, Any], plan: Plan, marker: str | None) -> dict[str, Any]:
    """A copy as it is posted: no id or server meta, references rewritten, the marker tag added."""
    body = rewrite_references(copy.deepcopy(resource), plan)
    body.pop("id", None)
    meta = body.get("meta") or {}
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if marker is not None:
        meta["tag"] = [*meta.get("tag", []), {"system": MARK, "code": marker}]
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return body


# --- choosing a subject ---------------------------------------------------------------------------


def _score(param: SearchParam, rows: list[dict[str, Any]]) -> tuple[int, ...]:
    """How many of the parameter's forms the rows let a matching case exist for."""
    if not rows:
        return (0,)
    if param.type == "token":
        return (
            1,
            any(r["system"] and r["code"] for r in rows),
            any(r["system"] is None and r["code"] for r in rows),
            any(r["text"] for r in rows),
        )
    if param.type == "reference":
        return (1, any(r["target_type"] and not r["url"] for r in rows), any(r["url"] for r in rows))
    if param.type == "date":
        bounded = [r for r in rows if r["low"] and r["high"]]
        return (1, bool(bounded), any(r["high"] - r["low"] <= timedelta(days=1) for r in bounded), len(rows) == 1)
    if param.type == "quantity":
        units = [r for r in rows if r["code"]]
        convertible = any(r["code"] in CONVERSIONS for r in units)
        return (1, any(r["system"] for r in units), convertible, len(rows) == 1)
    if param.type == "uri":
        return (1, any("/" in r["value"].split("://", 1)[-1] for r in rows))
    if param.type == "string":
        return (1, any(len(r["exact"]) >= 3 for r in rows))
    return (1,)


def choose_source(param: SearchParam, plan: Plan) -> tuple[str, dict[str, Any]] | None:
    """(source name, resource) with the best-scoring rows for the parameter, or a synthesized one."""
    best: tuple[tuple[int, ...], str, dict[str, Any]] | None = None
    for name, text in examples(param.resource_type):
        resource = json.loads(text, parse_float=Decimal)
        score = _score(param, rows_of(resource, param.code))
        if score > (0,) and (best is None or score > best[0]):
            best = (score, name, resource)
    if best is not None:
        return best[1], best[2]
    synthesized = synthesize(param, plan)
    if synthesized is not None and rows_of(synthesized[0], param.code):
        return "synthesized", synthesized[0]
    return None


# --- date, number and quantity semantics (search.html#prefix) --------------------------------------


def _day(day: date) -> tuple[str, datetime, datetime]:
    start = datetime(day.year, day.month, day.day)
    return day.isoformat(), start, start + timedelta(days=1)


def _month(day: date) -> tuple[str, datetime, datetime]:
    start = datetime(day.year, day.month, 1)
    following = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return f"{day.year:04d}-{day.month:02d}", start, following


def _year(year: int) -> tuple[str, datetime, datetime]:
    return f"{year:04d}", datetime(year, 1, 1), datetime(year + 1, 1, 1)


def _shift(day: date, days: int) -> date:
    return day + timedelta(days=days)


def _around(low: datetime | None, high: datetime | None) -> list[tuple[str, datetime, datetime]]:
    """Day, month and year values at, just outside and far outside a stored range, nearest first."""
    last = high - timedelta(microseconds=1) if high else None
    makers: list[tuple[Callable[..., tuple[str, datetime, datetime]], Callable[[], Any]]] = []
    if low:
        start = low
        makers += [(_day, start.date), (_month, start.date), (_year, lambda: start.year)]
        makers += [(_day, lambda: _shift(start.date(), -1)), (_day, lambda: _shift(start.date(), -400))]
    if last:
        end = last
        makers += [(_day, end.date), (_day, lambda: _shift(end.date(), 1)), (_day, lambda: _shift(end.date(), 400))]
    if low:
        makers.append((_year, lambda: low.year - 100))
    if last:
        makers.append((_year, lambda: last.year + 100))
    found = []
    for make, argument in makers:
        try:
            found.append(make(argument()))
        except (ValueError, OverflowError):  # beyond the calendar
            continue
    return found


def date_candidates(rows: list[dict[str, Any]]) -> list[tuple[str, datetime, datetime]]:
    """Search values around the rows' ranges: (text, [low, high) in UTC)."""
    found: list[tuple[str, datetime, datetime]] = []
    for row in rows:
        for candidate in _around(row["low"], row["high"]):
            if candidate not in found and 1 <= candidate[1].year <= 9000:
                found.append(candidate)
    return found


def date_matches(prefix: str, sl: datetime, sh: datetime, row: dict[str, Any], now: datetime) -> bool | None:
    """Whether a stored range [tl, th) (None: open) matches `prefix` + the search range [sl, sh),
    per search.html#date; None where `ap` leaves it to the server."""
    tl, th = row["low"], row["high"]
    eq = tl is not None and th is not None and sl <= tl and th <= sh
    above = th is None or th > sh  # the stored range reaches above the search range
    below = tl is None or tl < sl
    overlap = (tl is None or tl < sh) and (th is None or th > sl)
    if prefix == "ap":
        if overlap:
            return True
        margin = max(abs(now - sl), abs(now - sh)) * 0.25 + timedelta(days=1)
        wide = (tl is None or tl < sh + margin) and (th is None or th > sl - margin)
        return None if wide else False
    return {
        "eq": eq,
        "ne": not eq,
        "gt": above,
        "lt": below,
        "ge": above or eq,
        "le": below or eq,
        "sa": tl is not None and tl >= sh,
        "eb": th is not None and th <= sl,
    }[prefix]


def pick_date(prefix: str, rows: list[dict[str, Any]], match: bool, now: datetime) -> str | None:
    """The first candidate that gives `match` for the resource (any row matching is a match)."""
    for text, sl, sh in date_candidates(rows):
        results = [date_matches(prefix, sl, sh, row, now) for row in rows]
        outcome = True if True in results else (None if None in results else False)
        if outcome is match:
            return text
    return None


def _precision(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """The value and its implicit range [low, high) (search.html#number: half the last digit)."""
    value = Decimal(text)
    half = Decimal(5).scaleb(value.as_tuple().exponent - 1)  # type: ignore[operator]
    return value, value - half, value + half


def number_matches(prefix: str, text: str, row: dict[str, Any]) -> bool | None:
    """A stored closed range [tl, th] (a point when equal; None: open) against `prefix` + `text`."""
    s, sl, sh = _precision(text)
    tl = None if row["low"] is None else Decimal(repr(row["low"]))
    th = None if row["high"] is None else Decimal(repr(row["high"]))
    eq = tl is not None and th is not None and sl <= tl and th < sh
    if prefix == "ap":
        if (tl is None or tl <= sh) and (th is None or th >= sl):
            return True
        distance = min(abs(x - s) for x in (tl, th) if x is not None)
        return False if distance > abs(s) / 2 + (sh - sl) else None
    return {
        "eq": eq,
        "ne": not eq,
        "gt": th is None or th > s,
        "lt": tl is None or tl < s,
        "ge": th is None or th >= s,
        "le": tl is None or tl <= s,
        "sa": tl is not None and tl > s,
        "eb": th is not None and th < s,
    }[prefix]


def _text(number: Decimal) -> str:
    return format(number, "f")


def number_candidates(rows: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for row in rows:
        for bound in (row["low"], row["high"]):
            if bound is None:
                continue
            value = Decimal(repr(bound))
            step = 10 * max(abs(value), Decimal(1))
            for text in (_text(value), _text(value + step), _text(value - step)):
                if text not in found:
                    found.append(text)
    return found


def pick_number(prefix: str, rows: list[dict[str, Any]], match: bool) -> str | None:
    for text in number_candidates(rows):
        results = [number_matches(prefix, text, row) for row in rows]
        outcome = True if True in results else (None if None in results else False)
        if outcome is match:
            return text
    return None


# --- cases per parameter type --------------------------------------------------------------------


def _both(plan: Plan, base: str, subject: str, name: str, match: str | None, nomatch: str | None, **kw: Any) -> None:
    if match is not None:
        plan.add(f"{base}-match", subject, name, match, True, **kw)
    if nomatch is not None:
        plan.add(f"{base}-nomatch", subject, name, nomatch, False, **kw)


def string_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    code, base = param.code, f"{plan.resource_type}-{param.code}"
    values = [r["exact"] for r in rows]
    row = max(values, key=lambda v: (len(v) >= 3, v.isascii(), -abs(len(v) - 8)))
    starts = max(1, (len(row) + 1) // 2) if code != "phonetic" else len(row)
    prefix = row[:starts].rstrip() or row
    prefix = prefix.upper() if prefix.isascii() else prefix
    absent = "Zzqx Nomatch"
    assert not any(normal(v).startswith(normal(absent)) for v in values)
    _both(plan, f"{base}-default", subject, code, esc(prefix), esc(absent))
    accented = next((v for v in values if normal(v) != " ".join(v.casefold().split())), None)
    if accented:  # accents are ignored by default (search.html#string)
        plan.add(f"{base}-default-accents-match", subject, code, esc(normal(accented)), True)
    swapped = row.swapcase()
    exact_miss = swapped if swapped != row and swapped not in values else row + "x"
    _both(plan, f"{base}-exact", subject, f"{code}:exact", esc(row), esc(exact_miss))
    middle = row[1:-1].strip() if len(row) >= 3 else row
    middle = middle.upper() if middle.isascii() else middle
    _both(plan, f"{base}-contains", subject, f"{code}:contains", esc(middle or row), esc("qqzzx"))


def token_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    code, base = param.code, f"{plan.resource_type}-{param.code}"
    coded = sorted((r for r in rows if r["code"]), key=lambda r: r["system"] == MARK)  # the marker tag last
    systemed = [r for r in coded if r["system"]]
    best = (systemed or coded or [None])[0]
    if best is not None:
        absent = f"{best['code']}-{NO_MATCH}"
        _both(plan, f"{base}-code", subject, code, esc(best["code"]), esc(absent))
        if best["system"]:
            plan.add(f"{base}-system-code-match", subject, code, f"{esc(best['system'])}|{esc(best['code'])}", True)
        plan.add(f"{base}-system-code-nomatch", subject, code, f"{OTHER_SYSTEM}|{esc(best['code'])}", False)
        bare = [r for r in coded if r["system"] is None]
        bare_codes = {r["code"] for r in bare}
        if bare:
            plan.add(f"{base}-nosystem-code-match", subject, code, f"|{esc(bare[0]['code'])}", True)
        miss = next((r["code"] for r in systemed if r["code"] not in bare_codes), absent)
        plan.add(f"{base}-nosystem-code-nomatch", subject, code, f"|{esc(miss)}", False)
        _both(plan, f"{base}-not", subject, f"{code}:not", esc(absent), esc(best["code"]))
    else:
        plan.add(f"{base}-code-nomatch", subject, code, NO_MATCH, False)
        plan.add(f"{base}-not-match", subject, f"{code}:not", NO_MATCH, True)
    with_system = [r for r in rows if r["system"] and r["system"] != MARK] or [r for r in rows if r["system"]]
    if with_system:
        plan.add(f"{base}-system-only-match", subject, code, f"{esc(with_system[0]['system'])}|", True)
    plan.add(f"{base}-system-only-nomatch", subject, code, f"{OTHER_SYSTEM}|", False)
    texts = [r["text"] for r in rows if r["text"]]
    if texts:
        text = texts[0]
        start = text[: max(3, len(text) // 2)].rstrip()
        plan.add(f"{base}-text-match", subject, f"{code}:text", esc(start.upper() if start.isascii() else start), True)
    # ContactPoint values are stored encrypted: only exact searches can reach them (search/protected.py)
    plan.add(f"{base}-text-nomatch", subject, f"{code}:text", "qqzzx", False, status=400 if encrypted(param) else 200)
    coding_rows = [r for r in systemed if r["code"] not in (None, "")]
    if coding_rows and value_type(param) in ("Coding", "CodeableConcept"):  # value sets hold codings
        every = f"http://example.org/fhir/ValueSet/matrix-{RUN}-{plan.resource_type}-{code}"
        unrelated = f"http://example.org/fhir/ValueSet/matrix-{RUN}-{plan.resource_type}-unrelated"
        value_set(plan, every, [(r["system"], r["code"]) for r in coding_rows])
        value_set(plan, unrelated, [(OTHER_SYSTEM, NO_MATCH)])
        _both(plan, f"{base}-in", subject, f"{code}:in", every, unrelated)
        _both(plan, f"{base}-not-in", subject, f"{code}:not-in", unrelated, every)


def encrypted(param: SearchParam) -> bool:
    """A parameter over ContactPoint values, which are encrypted and searched by keyed hash."""
    return protection(param) == CONTACT


def value_type(param: SearchParam) -> str | None:
    """The FHIR type of the parameter's values (of the first part of its expression)."""
    synthesized = synthesize(param, Plan(param.resource_type))
    return synthesized[1] if synthesized else None


def token_variant_cases(plan: Plan, param: SearchParam, key: str) -> None:
    """Matches for the token forms the subject has no value for: a synthesized subject whose Coding,
    CodeableConcept or Identifier has a system (`system|code`, `system|`), or has none and has a
    text (`|code`, `:text`). For a `code`, `boolean` or ContactPoint element these forms do not
    apply: such a value has neither a system nor a text."""
    base = f"{plan.resource_type}-{param.code}"
    have = {case.id for case in plan.cases}
    for system, forms in ((True, ("system-code", "system-only")), (False, ("nosystem-code", "text"))):
        wanted = [form for form in forms if f"{base}-{form}-match" not in have]
        synthesized = synthesize(param, plan, system=system) if wanted else None
        if synthesized is None or synthesized[1] not in ("Coding", "CodeableConcept", "Identifier"):
            continue
        variant = _subject(plan, synthesized[0], f"{key}-{'system' if system else 'nosystem'}")
        rows = [r for r in rows_of(plan.entries[variant].resource, param.code) if r["system"] != MARK]
        coded = next((r for r in rows if r["code"] and bool(r["system"]) == system), None)
        text = next((r["text"] for r in rows if r["text"]), None)
        values = {
            "system-code": coded and f"{esc(coded['system'] or '')}|{esc(coded['code'])}",
            "system-only": coded and f"{esc(coded['system'] or '')}|",
            "nosystem-code": coded and f"|{esc(coded['code'])}",
            "text": text and esc(text[: max(3, len(text) // 2)].upper()),
        }
        for form in wanted:
            if values[form]:
                name = f"{param.code}:text" if form == "text" else param.code
                plan.add(f"{base}-{form}-match", variant, name, values[form], True)


def value_set(plan: Plan, url: str, codes: list[tuple[str, str]]) -> None:
    if any(entry.resource.get("url") == url for entry in plan.entries.values()):
        return
    by_system: dict[str, list[str]] = {}
    for system, code in codes:
        if code not in by_system.setdefault(system, []):
            by_system[system].append(code)
    include = [{"system": s, "concept": [{"code": c} for c in cs]} for s, cs in by_system.items()]
    contains = [{"system": s, "code": c} for s, cs in by_system.items() for c in cs]
    resource = {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": include},
        "expansion": {"timestamp": "2024-01-01T00:00:00Z", "contains": contains},
    }
    placeholder = plan.placeholder()
    plan.entries[placeholder] = Entry(placeholder, resource, "valueset")


def reference_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    code, base = param.code, f"{plan.resource_type}-{param.code}"
    local = [r for r in rows if r["target_type"] and r["target_id"] and not r["url"]]
    pairs = {(r["target_type"], r["target_id"]) for r in rows}
    if local:
        row = next((r for r in local if PLACEHOLDER.fullmatch(r["target_id"])), local[0])
        kind, ident = row["target_type"], row["target_id"]
        _both(plan, f"{base}-type-id", subject, code, f"{kind}/{ident}", f"{kind}/{NO_MATCH}")
        _both(plan, f"{base}-id", subject, code, ident, NO_MATCH)
        if not param.targets or kind in param.targets:
            plan.add(f"{base}-type-modifier-match", subject, f"{code}:{kind}", ident, True)
            other = next((t for t in param.targets if t != kind and (t, ident) not in pairs), None)
            if other:
                plan.add(f"{base}-type-modifier-nomatch", subject, f"{code}:{other}", ident, False)
            else:
                plan.add(f"{base}-type-modifier-nomatch", subject, f"{code}:{kind}", NO_MATCH, False)
        if PLACEHOLDER.fullmatch(ident) and param.targets:
            tag = f"{MARK}|{target_marker(ident)}"
            _both(plan, f"{base}-chain", subject, f"{code}._tag", tag, f"{MARK}|{RUN}-{NO_MATCH}")
            if len(param.targets) > 1 and kind in param.targets:
                plan.add(f"{base}-chain-typed-match", subject, f"{code}:{kind}._tag", tag, True)
    urls = [r["url"] for r in rows if r["url"]]
    if urls:
        _both(plan, f"{base}-url", subject, code, esc(urls[0]), esc(urls[0] + "-" + NO_MATCH))
    if not local and not urls:
        _both(plan, f"{base}-id", subject, code, None, NO_MATCH)


def uri_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    code, base = param.code, f"{plan.resource_type}-{param.code}"
    values = [r["value"] for r in rows]
    value = next((v for v in values if "/" in v.split("://", 1)[-1]), values[0])
    _both(plan, f"{base}-default", subject, code, esc(value), esc(value + "-" + NO_MATCH))
    child = value.rstrip("/") + "/zz-child"
    path = value.split("://", 1)[-1]
    parent = value[: value.rfind("/")] if "/" in path else None
    # :above: the stored URI is the search URI or one of its parents; :below: one of its children.
    _both(plan, f"{base}-above", subject, f"{code}:above", esc(child), esc(parent) if parent else None)
    _both(plan, f"{base}-below", subject, f"{code}:below", esc(parent) if parent else None, esc(child))


def date_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    for prefix in PREFIXES:
        base = f"{plan.resource_type}-{param.code}-{prefix}"
        match, nomatch = pick_date(prefix, rows, True, now), pick_date(prefix, rows, False, now)
        _both(plan, base, subject, param.code, match and prefix + match, nomatch and prefix + nomatch)


def number_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    for prefix in PREFIXES:
        base = f"{plan.resource_type}-{param.code}-{prefix}"
        match, nomatch = pick_number(prefix, rows, True), pick_number(prefix, rows, False)
        _both(plan, base, subject, param.code, match and prefix + match, nomatch and prefix + nomatch)


def quantity_cases(plan: Plan, param: SearchParam, subject: str, rows: list[dict[str, Any]]) -> None:
    code = param.code
    row = max(rows, key=lambda r: (bool(r["code"]), bool(r["system"]), r["code"] in CONVERSIONS))
    same_unit = [r for r in rows if r["code"] == row["code"] and r["system"] == row["system"]]
    units = f"|{esc(row['system'] or '')}|{esc(row['code'])}" if row["code"] else ""
    for prefix in PREFIXES:
        base = f"{plan.resource_type}-{code}-{prefix}"
        match, nomatch = pick_number(prefix, same_unit, True), pick_number(prefix, same_unit, False)
        _both(plan, base, subject, code, match and prefix + match + units, nomatch and prefix + nomatch + units)
    value = pick_number("eq", same_unit, True)
    if value is None or not row["code"]:
        return
    base = f"{plan.resource_type}-{code}-unit"
    far = pick_number("eq", same_unit, False)
    _both(plan, f"{base}-none", subject, code, value, pick_number("eq", rows, False))  # in any unit
    _both(
        plan, f"{base}-code-only", subject, code, f"{value}||{esc(row['code'])}", far and f"{far}||{esc(row['code'])}"
    )
    other = f"{value}|{esc(row['system'] or UCUM)}|zz-other-unit"
    plan.add(f"{base}-other-nomatch", subject, code, other, False)
    if row["system"] == UCUM and row["code"] in CONVERSIONS:
        unit, factor = CONVERSIONS[row["code"]]
        converted = _text(Decimal(value) * factor)
        far = _text((Decimal(value) + 10 * max(abs(Decimal(value)), Decimal(1))) * factor)
        _both(plan, f"{base}-canonical", subject, code, f"{converted}|{UCUM}|{unit}", f"{far}|{UCUM}|{unit}")


def composite_cases(plan: Plan, param: SearchParam, subject: str, resource: dict[str, Any]) -> None:
    """`code$value` pairs of one element (search.html#composite), read from the resource JSON."""
    base = f"{plan.resource_type}-{param.code}"
    pairs = composite_pairs(param, resource)
    if not pairs:
        plan.add(f"{base}-nomatch", subject, param.code, f"{OTHER_SYSTEM}|x$y", False)
        return
    first, second, altered = pairs[0]
    _both(plan, base, subject, param.code, f"{first}${second}", f"{first}${altered}")
    together = {(a, b) for a, b, _ in pairs}
    crossed = [(a, b) for a, _, _ in pairs for _, b, _ in pairs if (a, b) not in together]
    if crossed:  # both halves occur in the resource, but not in the same element
        plan.add(f"{base}-crossed-nomatch", subject, param.code, "$".join(crossed[0]), False)


def _component_value(element: dict[str, Any], expression: str) -> tuple[str, str] | None:
    """(query text, altered query text) of one component of an element."""
    for part in expression.split(" | "):
        part = part.strip()
        if part == "code":
            concept = element.get("code") or {}
            coding = next((c for c in concept.get("coding", []) if c.get("code")), None)
            if coding:
                return f"{esc(coding.get('system', ''))}|{esc(coding['code'])}", f"{OTHER_SYSTEM}|{NO_MATCH}"
            continue
        cast = re.fullmatch(r"value\.as\(([A-Za-z]+)\)", part)
        if not cast:
            continue
        kind = cast.group(1)
        value = element.get("value" + kind[0].upper() + kind[1:])
        if value is None:
            continue
        if kind == "Quantity" and value.get("value") is not None:
            number = Decimal(str(value["value"]))
            units = f"|{esc(value.get('system', ''))}|{esc(value.get('code', ''))}" if value.get("code") else ""
            altered = _text(number + 10 * max(abs(number), Decimal(1)))
            return f"{_text(number)}{units}", f"{altered}{units}"
        if kind == "CodeableConcept":
            coding = next((c for c in value.get("coding", []) if c.get("code")), None)
            if coding:
                return f"{esc(coding.get('system', ''))}|{esc(coding['code'])}", f"{OTHER_SYSTEM}|{NO_MATCH}"
        if kind == "string" and isinstance(value, str):
            return esc(value), "qqzzx"
        if kind == "dateTime" and isinstance(value, str):
            return esc(value), "1800-01-01"
    return None


def composite_pairs(param: SearchParam, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(first component, second component, altered second component) per element that has both."""
    elements_: list[dict[str, Any]] = []
    for part in (param.expression or "").split(" | "):
        path = part.strip().split(".")[1:]
        nodes: list[Any] = [resource]
        for step in path:
            nodes = [c for n in nodes for c in (n.get(step) if isinstance(n.get(step), list) else [n.get(step)])]
            nodes = [n for n in nodes if isinstance(n, dict)]
        elements_.extend(nodes)
    pairs = []
    for element in elements_:
        values = [_component_value(element, component.expression) for component in param.components]
        if len(values) == 2 and values[0] and values[1]:
            pairs.append((values[0][0], values[1][0], values[1][1]))
    return pairs


def missing_cases(plan: Plan, param: SearchParam, subject: str) -> None:
    base = f"{plan.resource_type}-{param.code}-missing"
    _both(plan, base, subject, f"{param.code}:missing", "false", "true")


# --- the plan of one type ----------------------------------------------------------------------------

_CASES: dict[str, Callable[[Plan, SearchParam, str, list[dict[str, Any]]], None]] = {
    "string": string_cases,
    "token": token_cases,
    "reference": reference_cases,
    "uri": uri_cases,
    "date": date_cases,
    "number": number_cases,
    "quantity": quantity_cases,
}


def _narrative_words(resource: dict[str, Any]) -> list[str]:
    div = (resource.get("text") or {}).get("div") or ""
    return re.findall(r"(?<![&#\w])[A-Za-z]{6,}(?![\w;])", re.sub(r"<[^>]+>", " ", div))


def _narrative(resource: dict[str, Any]) -> str:
    """The narrative's text, normalised (tags dropped, entities read)."""
    div = (resource.get("text") or {}).get("div") or ""
    return normal(html.unescape(re.sub(r"<[^>]+>", " ", div)))


# Elements whose values are text for `_content` (search.html#content), read independently of the
# server's extraction: a word of one of them, outside the narrative, tells `_content` (the whole
# resource) from `_text` (the narrative only).
_TEXT_ELEMENTS = ("display", "text", "family", "given", "city", "line", "name", "description", "comment")


def _element_word(resource: dict[str, Any]) -> str | None:
    """A word (5+ letters, starting a word) of a text element outside the narrative that the
    narrative does not contain, or None."""
    narrative = _narrative(resource)

    def walk(node: Any, key: str) -> Iterator[str]:
        if isinstance(node, str) and key in _TEXT_ELEMENTS:
            yield from re.findall(r"(?<![^\W_])[A-Za-z]{5,}", node)
        elif isinstance(node, dict):
            for name, value in node.items():
                yield from walk(value, name)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, key)

    body = {key: value for key, value in resource.items() if key not in ("text", "meta")}
    return next((word for word in walk(body, "") if normal(word) not in narrative), None)


def text_cases(plan: Plan, code: str, subject: str, blank: str) -> None:
    """`_text` / `_content` (search.html#text, #content): a narrative word finds the subject and
    not the blank resource; a word absent from the resource finds nothing; a word of an element
    outside the narrative is found by `_content` and not by `_text`."""
    key = f"{plan.resource_type}-{code}"
    source = plan.entries[subject].resource
    blank_text = normal(json.dumps(plan.entries[blank].resource))
    word = next((word for word in _narrative_words(source) if normal(word) not in blank_text), None)
    assert word, f"{key}: the subject has no narrative word that the blank resource lacks"
    _both(plan, key, subject, code, word, "qqzzxnomatch")
    plan.add(f"{key}-blank-nomatch", blank, code, word, False)
    plan.add(f"{key}-uppercase-match", subject, code, word.upper(), True)
    outside = _element_word(source)
    assert outside, f"{key}: the subject has no text element outside its narrative"
    plan.add(
        f"{key}-element-{'match' if code == '_content' else 'nomatch'}", subject, code, outside, code == "_content"
    )


def _subject(plan: Plan, resource: dict[str, Any], key: str) -> str:
    placeholder = plan.placeholder()
    marker = f"{RUN}-{key}"
    plan.entries[placeholder] = Entry(placeholder, prepared(resource, plan, marker), "subject", marker)
    return placeholder


@cache
def build_plan(resource_type: str) -> Plan:
    plan = Plan(resource_type)
    blank = plan.placeholder()
    plan.entries[blank] = Entry(blank, minimal(resource_type, "blank"), "blank")
    blank_codes = {row.param for row in index_rows(plan.entries[blank].resource)}
    first_example = json.loads(examples(resource_type)[0][1], parse_float=Decimal)
    for code, param in search_params(resource_type).items():
        key = f"{resource_type}-{code}"
        if code in ("_id", "_lastUpdated"):
            subject = _subject(plan, first_example, key)
            if code == "_id":
                plan.add(f"{key}-match", subject, code, subject, True)
                plan.add(f"{key}-or-match", subject, code, f"{NO_MATCH},{subject}", True)
                plan.add(f"{key}-nomatch", subject, code, NO_MATCH, False)
            else:
                for prefix in PREFIXES:
                    for match in (True, False):
                        case_id = f"{key}-{prefix}-{'match' if match else 'nomatch'}"
                        plan.add(case_id, subject, code, prefix, match, dynamic="lastUpdated")
            continue
        if code in ("_text", "_content"):
            source = next(
                resource
                for resource in (json.loads(t, parse_float=Decimal) for _, t in examples(resource_type))
                if _narrative_words(resource) and _element_word(resource)
            )
            text_cases(plan, code, _subject(plan, source, key), blank)
            continue
        if param.type == "composite":
            source = max(
                (json.loads(t, parse_float=Decimal) for _, t in examples(resource_type)),
                key=lambda r: len(composite_pairs(param, r)),
            )
            subject = _subject(plan, source, key)
            composite_cases(plan, param, subject, source)
            missing_cases(plan, param, subject)
            if not composite_pairs(param, plan.entries[blank].resource):
                plan.add(f"{key}-missing-blank-match", blank, f"{code}:missing", "true", True)
            continue
        if param.table is None:  # special parameters without an expression (`_query`)
            subject = _subject(plan, first_example, key)
            plan.add(f"{key}-strict-rejected", subject, code, "anything", False, status=400)
            plan.add(f"{key}-lenient-ignored-match", subject, code, "anything", True, lenient=True)
            continue
        chosen = choose_source(param, plan)
        if chosen is None:
            plan.add(f"{key}-no-value-could-be-generated", "", code, "", True)
            continue
        subject = _subject(plan, chosen[1], key)
        rows = rows_of(plan.entries[subject].resource, code)
        _CASES[param.type](plan, param, subject, rows)
        if param.type == "token":
            token_variant_cases(plan, param, key)
        missing_cases(plan, param, subject)
        if code not in blank_codes:
            plan.add(f"{key}-missing-blank-match", blank, f"{code}:missing", "true", True)
    return plan


def all_cases() -> Iterator[Case]:
    for resource_type in TYPES:
        yield from build_plan(resource_type).cases
