"""$reindex-status on a SearchParameter: how far the reindex after its creation has got.

Not an HL7 operation (R4 leaves custom parameter activation to servers, search.html#custom);
it answers a Parameters resource with the job's `status` (queued, running, done, failed),
`processed` and `total` resources, and whether the parameter is `usable` (listed in the
CapabilityStatement).
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import NotFound
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.custom_params import REINDEX
from fhir_server.interactions.read import read_in
from fhir_server.model.json import parse
from fhir_server.ops.registry import Operation, register


def reindex_status(
    env: Env, resource_type: str | None, resource_id: str | None, body: Any, params: list[tuple[str, str]]
) -> Result:
    if resource_type != "SearchParameter" or resource_id is None:
        raise NotFound("$reindex-status is defined on SearchParameter instances", "operation-unknown")
    with env.store.unit_of_work(env.visibility("r", resource_type), read_only=True) as uow:
        definition = parse(read_in(uow, resource_type, resource_id).content or b"{}")
        jobs = [job for job in uow.jobs_of(REINDEX) if job.payload.get("url") == definition.get("url")]
    if not jobs:
        raise NotFound("No reindex job exists for this SearchParameter", "job-not-found")
    job = jobs[-1]
    parameters: list[dict[str, Any]] = [
        {"name": "status", "valueCode": job.state},
        {"name": "processed", "valueInteger": job.processed},
        {"name": "usable", "valueBoolean": job.state == "done"},
    ]
    if job.total is not None:
        parameters.append({"name": "total", "valueInteger": job.total})
    return Result(200, body={"resourceType": "Parameters", "parameter": parameters})


REINDEX_STATUS = register(
    Operation(
        name="reindex-status",
        definition="urn:fhir-server:OperationDefinition/reindex-status",
        handler=reindex_status,
        instance_level=True,
        resource_types=frozenset({"SearchParameter"}),
    )
)
