"""HTTP header semantics (R4 http.html#versioning, #cread, #ops): ETag, Last-Modified, If-Match,
If-None-Match, If-Modified-Since and Prefer."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from fhir_server.errors import Invalid
from fhir_server.store.repository import StoredVersion

PREFER_RETURN = ("minimal", "representation", "OperationOutcome")


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(tzinfo=UTC), usegmt=True)


def version_headers(stored: StoredVersion) -> dict[str, str]:
    return {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}


def parse_if_match(value: str | None) -> int | None:
    """The version an If-Match names; `*` (RFC 9110: any current version) sets no constraint."""
    if value is None or value.strip() == "*":
        return None
    digits = value.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise Invalid(f"If-Match '{value}' is not an ETag such as W/\"3\"", "if-match-invalid")
    return int(digits)


def not_modified(stored: StoredVersion, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """Conditional read: True when the client's copy is current (answer 304)."""
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or f'"{stored.version_id}"' in tags
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return stored.last_updated.replace(tzinfo=UTC, microsecond=0) <= since
    return False


def prefer_return(prefer: str | None) -> str:
    """The `return` preference: minimal, representation (the default) or OperationOutcome."""
    for part in (prefer or "").split(","):
        for token in part.split(";"):
            name, _, value = token.strip().partition("=")
            if name == "return" and value.strip('"') in PREFER_RETURN:
                return value.strip('"')
    return "representation"


def prefer_strict(prefer: str | None) -> bool:
    """`Prefer: handling=lenient` relaxes search; strict is our default (search.html#errors)."""
    for part in (prefer or "").split(","):
        for token in part.split(";"):
            name, _, value = token.strip().partition("=")
            if name == "handling" and value.strip('"') == "lenient":
                return False
    return True
