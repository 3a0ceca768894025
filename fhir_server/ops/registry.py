"""The registry of `$operations`: it feeds the routes and the CapabilityStatement (operations.html)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.interactions.context import Env, Result

# handler(env, resource_type, resource_id, body, params)
Handler = Callable[[Env, str | None, str | None, Any, list[tuple[str, str]]], Result]


@dataclass(frozen=True)
class Operation:
    name: str
    definition: str  # canonical URL of the OperationDefinition
    handler: Handler
    type_level: bool = False
    instance_level: bool = False
    system_level: bool = False
    affects_state: bool = False
    resource_types: frozenset[str] | None = None  # None: every type

    def applies_to(self, resource_type: str) -> bool:
        return self.resource_types is None or resource_type in self.resource_types


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    OPERATIONS[operation.name] = operation
    return operation
