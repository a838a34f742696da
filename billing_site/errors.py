"""Domain errors: rules raise these, and one API exception handler turns them into HTTP answers."""

from __future__ import annotations


class DomainError(Exception):
    """A rule refused a request; `code`, `status` and `errors` say what and where for the client."""

    status: int = 400
    code: str = "INVALID_REQUEST"

    def __init__(self, message: str, *, errors: list[dict] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        if code:
            self.code = code


class InvalidInput(DomainError):
    status = 422
    code = "INVALID_REQUEST_BODY"

    @classmethod
    def from_errors(cls, errors: list[dict]) -> InvalidInput:
        """One error for a list of `{field, message}` problems, its message naming each."""
        return cls(describe(errors), errors=list(errors))


def describe(errors: list[dict]) -> str:
    """`field: message; field: message`, the message of an error that lists several problems."""
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"


class Conflict(DomainError):
    status = 409
    code = "CONFLICT"
