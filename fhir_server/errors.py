"""One error family for the whole server, and its mapping to OperationOutcome.

FHIR R4 operationoutcome.html: each problem is one `issue` with a severity, an issue type code
(http://hl7.org/fhir/ValueSet/issue-type) and, where known, a FHIRPath location in `expression`.
Every error carries a stable machine code in `issue.details.coding` (system ERROR_CODE_SYSTEM) so
clients and tests can rely on it rather than on wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR_CODE_SYSTEM = "urn:fhir-server:error-code"


@dataclass(frozen=True)
class Issue:
    """One problem: `code` is the FHIR issue type, `error_code` our stable code."""

    message: str
    error_code: str
    code: str = "invalid"
    expression: str | None = None
    severity: str = "error"

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "details": {
                "coding": [{"system": ERROR_CODE_SYSTEM, "code": self.error_code}],
                "text": self.message,
            },
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass
class FhirError(Exception):
    """Base of the family. Subclasses fix the HTTP status and the default issue type."""

    message: str
    error_code: str = "error"
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status = 500
    issue_code = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.issues:
            self.issues = [Issue(self.message, self.error_code, self.issue_code)]

    def to_outcome(self) -> dict[str, Any]:
        return outcome(self.issues)


class Invalid(FhirError):
    status = 400
    issue_code = "invalid"


class BusinessRule(FhirError):
    status = 422
    issue_code = "business-rule"


class Unauthorized(FhirError):
    status = 401
    issue_code = "login"


class TokenInvalid(Unauthorized):
    """A bearer token that is missing, malformed, badly signed, expired or meant for someone else
    (RFC 6750 section 3.1, `invalid_token`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="fhir", error="invalid_token"')


class OAuthError(FhirError):
    """An OAuth 2.0 error answered as RFC 6749 section 5.2 JSON: `error_code` is the OAuth `error`
    (invalid_request, invalid_client, invalid_grant, unauthorized_client, unsupported_grant_type,
    invalid_scope, access_denied...) and `message` its `error_description`."""

    status = 400
    issue_code = "security"


class OAuthClientError(OAuthError):
    """`invalid_client`: the client could not be authenticated (RFC 6749 section 5.2: 401)."""

    status = 401


class Forbidden(FhirError):
    status = 403
    issue_code = "forbidden"


class NotFound(FhirError):
    status = 404
    issue_code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    issue_code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    issue_code = "not-supported"


class Conflict(FhirError):
    status = 409
    issue_code = "conflict"


class Gone(FhirError):
    status = 410
    issue_code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    issue_code = "conflict"


class TooLarge(FhirError):
    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    issue_code = "not-supported"


class NotSupported(FhirError):
    """A valid request for something this server does not implement."""

    status = 501
    issue_code = "not-supported"


class Unavailable(FhirError):
    status = 503
    issue_code = "transient"


class Internal(FhirError):
    status = 500
    issue_code = "exception"


def invalid(issues: list[Issue], message: str = "The resource is not valid") -> Invalid:
    """An `Invalid` listing each problem separately."""
    return Invalid(message, "invalid", issues=issues)


def outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information(message: str, error_code: str = "ok") -> dict[str, Any]:
    return outcome([Issue(message, error_code, "informational", severity="information")])
