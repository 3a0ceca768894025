"""Custom SearchParameter resources (R4 searchparameter.html, search.html#custom).

Storing an active SearchParameter makes it part of the registry at once for this process (and
within `RELOAD_SECONDS` for the others), so new writes are indexed by it; a reindex job then
indexes the resources stored before it (reindex.py). The CapabilityStatement lists it once that
job is done.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fhir_server.errors import BusinessRule, Issue
from fhir_server.model.json import parse
from fhir_server.search import registry
from fhir_server.search.extract import extractor
from fhir_server.store.repository import UnitOfWork

RELOAD_SECONDS = 1.0
REINDEX = "reindex"
_lock = threading.Lock()
_state: dict[str, Any] = {"seen": None, "checked": 0.0}


def check_definition(resource: dict[str, Any]) -> None:
    """A SearchParameter this server can index: known bases, a usable type and expression, and a
    code that does not redefine an official parameter of its bases (422 otherwise)."""
    if resource.get("resourceType") != "SearchParameter" or resource.get("status") == "retired":
        return
    problems = []
    code, bases = resource.get("code"), resource.get("base") or []
    for base in bases:
        official = registry.official_param(base, code) if code else None
        if official is not None and official.url != resource.get("url"):
            problems.append(
                Issue(
                    f"'{code}' is already a search parameter of {base}",
                    "search-parameter-exists",
                    "business-rule",
                    "SearchParameter.code",
                )
            )
    expression = resource.get("expression")
    if resource.get("type") not in ("composite", "special") and expression:
        try:
            extractor(expression)
        except Exception as exc:  # noqa: BLE001 - any compile failure means the expression is unusable
            problems.append(
                Issue(
                    f"The expression cannot be evaluated: {exc}",
                    "search-expression-invalid",
                    "business-rule",
                    "SearchParameter.expression",
                )
            )
    if problems:
        raise BusinessRule("The SearchParameter cannot be used", "search-parameter-invalid", issues=problems)


def sync(uow: UnitOfWork, force: bool = False) -> None:
    """Brings the registry's custom parameters up to date with the stored SearchParameters."""
    now = time.monotonic()
    if not force and now - _state["checked"] < RELOAD_SECONDS:
        return
    marker = uow.latest_change("SearchParameter")
    with _lock:
        _state["checked"] = now
        if marker == _state["seen"] and not force:
            return
        definitions = [parse(content) for content in uow.current_contents("SearchParameter")]
        active = [d for d in definitions if d.get("status") in ("active", "draft")]
        ready = {payload.get("url") for payload in uow.finished_job_payloads(REINDEX)}
        registry.install_custom(active, ready)
        _state["seen"] = marker


def written(uow: UnitOfWork, resource: dict[str, Any]) -> None:
    """After a SearchParameter is stored: use it for writes from now on, and reindex the past."""
    if resource.get("resourceType") != "SearchParameter":
        return
    sync(uow, force=True)
    if resource.get("status") in ("active", "draft") and resource.get("type") not in ("special",):
        payload = {"url": resource.get("url"), "code": resource.get("code"), "types": list(resource.get("base") or [])}
        uow.enqueue_job(REINDEX, payload)
