"""batch and transaction Bundles (R4 http.html#transaction).

A transaction is all or nothing: every entry runs in one unit of work, in the order the spec
sets (DELETE, POST, PUT/PATCH, GET/HEAD), after `urn:uuid:`/fullUrl and conditional references
have been resolved; the first failing entry rolls everything back and is named in the outcome.
A batch runs each entry on its own and reports each entry's outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fhir_server.auth import policy
from fhir_server.errors import FhirError, Invalid, Issue, TooLarge, invalid
from fhir_server.interactions import auditing
from fhir_server.interactions.bundle_entries import (
    Entry,
    begin_audit,
    entry_letter,
    parse_entries,
    prepare_entry,
    relocate,
    response_entry,
    run_entry,
)
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.references import assign_identities, rewrite_references
from fhir_server.model.schema import validate_against_schema
from fhir_server.model.validate import require_resource

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def process_bundle(env: Env, body: Any, return_resources: bool = True) -> Result:
    bundle = require_resource(body, "Bundle")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise Invalid(
            f"POST to the base accepts batch or transaction Bundles, not '{kind}'",
            "bundle-type",
            issues=[Issue(f"Bundle.type '{kind}' cannot be processed", "bundle-type", "invalid", "Bundle.type")],
        )
    count = len(bundle.get("entry") or [])
    if count > env.settings.max_bundle_entries:
        raise TooLarge(
            f"The Bundle has {count} entries; the limit is {env.settings.max_bundle_entries}", "bundle-too-many-entries"
        )
    # Each entry's resource is validated on its own (prepare_entry): once, and so that in a batch
    # one invalid resource answers in its own response entry instead of failing the whole batch.
    schema_issues = validate_against_schema(_without_resources(bundle), "Bundle")
    if schema_issues:
        raise invalid(schema_issues, "The Bundle is not valid")
    entries = parse_entries(bundle)
    if kind == "transaction":
        return _transaction(env, entries, return_resources)
    return _batch(env, entries, return_resources)


def _without_resources(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle
    shells = [
        {key: value for key, value in entry.items() if key != "resource"} if isinstance(entry, dict) else entry
        for entry in entries
    ]
    return {**bundle, "entry": shells}


def _transaction(env: Env, entries: list[Entry], return_resources: bool) -> Result:
    _prepare_all(entries)
    results: dict[int, Result] = {}
    with env.store.unit_of_work(policy.transaction_scope(env.access)) as uow:  # each step says what it may touch
        identities = assign_identities(uow, entries, env.visibility)
        for entry in entries:
            with _naming(entry):
                rewrite_references(uow, entry, identities, env.visibility)
        for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
            with _naming(entry):
                begin_audit(entry, "transaction")
                uow.visibility = env.visibility(entry_letter(entry), entry.resource_type)
                results[entry.index] = run_entry(uow, entry)
                auditing.entry_done(results[entry.index])
        auditing.transaction_done(uow)  # its AuditEvents, committed or undone with it
    responses = [response_entry(results[entry.index], return_resources) for entry in entries]
    return Result(200, body=_response_bundle("transaction-response", responses))


def _prepare_all(entries: list[Entry]) -> None:
    """Validates every entry before any database work, and reports every invalid entry at once."""
    problems: list[FhirError] = []
    for entry in entries:
        try:
            prepare_entry(entry, transaction=True)
        except FhirError as error:
            problems.append(relocate(error, entry.index))
    if problems:
        first = problems[0]
        message = first.message if len(problems) == 1 else f"{len(problems)} entries of the transaction are invalid"
        raise type(first)(message, first.error_code, [issue for problem in problems for issue in problem.issues])


def _batch(env: Env, entries: list[Entry], return_resources: bool) -> Result:
    responses = []
    for entry in entries:
        begin_audit(entry, "batch")
        try:
            prepare_entry(entry, transaction=False)
            read_only = entry.method in ("GET", "HEAD")
            visibility = env.visibility(entry_letter(entry), entry.resource_type)
            with env.store.unit_of_work(visibility, read_only=read_only) as uow:
                result = run_entry(uow, entry)
            auditing.entry_done(result)
            responses.append(response_entry(result, return_resources))
        except FhirError as error:
            located = relocate(error, entry.index)
            auditing.entry_failed(located)
            responses.append({"response": {"status": str(located.status), "outcome": located.to_outcome()}})
    return Result(200, body=_response_bundle("batch-response", responses))


def _response_bundle(kind: str, responses: list[dict[str, Any]]) -> dict[str, Any]:
    """The response Bundle; without `entry` when there is none (json.html: no empty arrays)."""
    body: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if responses:
        body["entry"] = responses
    return body


@contextmanager
def _naming(entry: Entry) -> Iterator[None]:
    """A failure of one entry's step names the entry (and, in a transaction, rolls back all)."""
    try:
        yield
    except FhirError as error:
        raise relocate(error, entry.index) from None
