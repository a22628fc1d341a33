"""Domain errors: the one error root of Trueup's rules.

Every error a caller can cause is a :class:`DomainError` with a stable ``code``. The HTTP layer
maps each class to a status in one table (``trueup.api.errors``); nothing below the API knows
about HTTP.
"""

from __future__ import annotations

from trueup.core.json_text import quoted

__all__ = [
    "CheckpointNotFoundError",
    "ConflictError",
    "CustomerNotFoundError",
    "DomainError",
    "DuplicateKeyError",
    "ForbiddenError",
    "IdempotencyMismatchError",
    "InvalidApiKeyError",
    "InvalidScopeError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PeriodLockedError",
    "PlanLimitExceededError",
    "RateLimitedError",
    "RequestTimeoutError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "ValidationError",
]


class DomainError(Exception):
    """Base of every error that a request can cause. ``code`` is UPPER_SNAKE and stable."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take other arguments than the message, so the default (the class called
        # with ``args``) would fail to rebuild them: restore the attributes instead. Errors
        # cross a process boundary this way (``trueup.cli.committer``).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ValidationError(DomainError):
    """The input breaks a rule; ``field`` names where (``items[3].bits``)."""

    code = "VALIDATION_ERROR"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class InvalidScopeError(ValidationError):
    """A checkpoint was combined with a period or date scope, or scopes were mixed."""

    code = "INVALID_SCOPE_COMBINATION"


class PayloadTooLargeError(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaTypeError(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class RequestTimeoutError(DomainError):
    """The client did not send its whole request body in time."""

    code = "REQUEST_TIMEOUT"


class InvalidApiKeyError(DomainError):
    code = "INVALID_API_KEY"


class ForbiddenError(DomainError):
    code = "FORBIDDEN"


class NotFoundError(DomainError):
    code = "NOT_FOUND"


class CustomerNotFoundError(NotFoundError):
    code = "CUSTOMER_NOT_FOUND"


class CheckpointNotFoundError(NotFoundError):
    code = "CHECKPOINT_NOT_FOUND"


class ConflictError(DomainError):
    code = "CONFLICT"


class DuplicateKeyError(ConflictError):
    """An item key already exists with different content."""

    code = "DUPLICATE_KEY"

    def __init__(self, key: str, fields: tuple[str, ...], where: str = "", key_name: str = "key") -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}{key_name} {quoted(key)} already exists with different "
            f"{', '.join(fields)}; use a new {key_name} or send identical content"
        )
        self.key = key
        self.fields = fields


class IdempotencyMismatchError(ConflictError):
    code = "IDEMPOTENCY_MISMATCH"


class PeriodLockedError(ConflictError):
    code = "PERIOD_LOCKED"


class PlanLimitExceededError(DomainError):
    code = "PLAN_LIMIT_EXCEEDED"


class RateLimitedError(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(DomainError):
    code = "SERVICE_UNAVAILABLE"

    def __init__(
        self, message: str, retry_after_seconds: int | None = None, incident_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.incident_id = incident_id
        """``err_…``, when the server's log names the failure by it (the reply quotes it)."""


def _rebuild(cls: type[DomainError], args: tuple[object, ...], state: dict[str, object]) -> DomainError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
