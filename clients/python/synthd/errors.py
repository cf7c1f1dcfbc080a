"""Errors: every call that does not end OK raises a `SynthError` carrying the server's status."""

from __future__ import annotations

import enum
from typing import List, NamedTuple, Optional, Sequence


class StatusCode(enum.IntEnum):
    """gRPC's status codes, with the same numbers (``synthd.v1.StatusCode``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class FieldError(NamedTuple):
    """One violation: ``field`` is a path such as ``advanced.output_split.test``."""

    field: str
    rule: str
    value: str


class SpellingSuggestion(NamedTuple):
    word: str
    suggestions: List[str]


class SynthError(Exception):
    """A call that did not end OK: the server's status, or a failure of the connection.

    Attributes: ``code`` (a `StatusCode`), ``error_code`` (a stable string such as
    ``VALIDATION_ERROR``; empty when none applies), ``message``, ``field_errors``,
    ``suggestions`` and ``retry_after`` (seconds, or None).
    """

    def __init__(self, code: int, message: str, error_code: str = "",
                 field_errors: Sequence[FieldError] = (), suggestions: Sequence[SpellingSuggestion] = (),
                 retry_after_ms: int = 0):
        try:
            self.code = StatusCode(code)
        except ValueError:
            self.code = code  # a code this client does not know: keep the number
        self.message = message
        self.error_code = error_code
        self.field_errors = list(field_errors)
        self.suggestions = list(suggestions)
        self.retry_after_ms = retry_after_ms
        super().__init__(str(self))

    @property
    def retry_after(self) -> Optional[float]:
        """Seconds to wait before retrying (RATE_LIMITED), or None."""
        return self.retry_after_ms / 1000.0 if self.retry_after_ms else None

    @property
    def code_name(self) -> str:
        return self.code.name if isinstance(self.code, StatusCode) else f"CODE_{self.code}"

    def __str__(self) -> str:
        head = self.code_name + (f" {self.error_code}" if self.error_code else "") + f": {self.message}"
        lines = [head]
        for f in self.field_errors:
            lines.append(f"  {f.field}: {f.rule}" + (f" (got {f.value})" if f.value else ""))
        for s in self.suggestions:
            lines.append(f"  did you mean: {s.word} -> {', '.join(s.suggestions)}")
        if self.retry_after_ms:
            lines.append(f"  retry after {self.retry_after_ms} ms")
        return "\n".join(lines)

    def __reduce__(self):
        # Picklable, so that errors cross DataLoader worker processes intact.
        return (_rebuild, (type(self), self.code, self.message, self.error_code, self.field_errors,
                           self.suggestions, self.retry_after_ms))


def _rebuild(cls, code, message, error_code, field_errors, suggestions, retry_after_ms):
    return cls(code, message, error_code, field_errors, suggestions, retry_after_ms)


class Cancelled(SynthError): pass
class InvalidArgument(SynthError): pass
class DeadlineExceeded(SynthError): pass
class NotFound(SynthError): pass
class PermissionDenied(SynthError): pass
class ResourceExhausted(SynthError): pass
class FailedPrecondition(SynthError): pass
class Unimplemented(SynthError): pass
class Internal(SynthError): pass
class Unavailable(SynthError): pass
class Unauthenticated(SynthError): pass


class ConnectionLost(Unavailable):
    """The connection to synthd could not be made, or closed before the call ended (UNAVAILABLE)."""

    @classmethod
    def because(cls, message: str) -> "ConnectionLost":
        return cls(StatusCode.UNAVAILABLE, message)


class ProtocolError(Internal):
    """synthd sent bytes that break the protocol (INTERNAL)."""

    @classmethod
    def because(cls, message: str) -> "ProtocolError":
        return cls(StatusCode.INTERNAL, message)


_BY_CODE = {
    StatusCode.CANCELLED: Cancelled,
    StatusCode.INVALID_ARGUMENT: InvalidArgument,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    StatusCode.NOT_FOUND: NotFound,
    StatusCode.PERMISSION_DENIED: PermissionDenied,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    StatusCode.UNIMPLEMENTED: Unimplemented,
    StatusCode.INTERNAL: Internal,
    StatusCode.UNAVAILABLE: Unavailable,
    StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_for(code: int, message: str, error_code: str = "", field_errors: Sequence[FieldError] = (),
              suggestions: Sequence[SpellingSuggestion] = (), retry_after_ms: int = 0) -> SynthError:
    """The `SynthError` subclass for ``code``."""
    cls = _BY_CODE.get(code, SynthError)
    return cls(code, message, error_code, field_errors, suggestions, retry_after_ms)


def from_status(status) -> SynthError:
    """A `SynthError` from a ``synthd.v1.Status`` message."""
    return error_for(
        status.code, status.message, status.error_code,
        [FieldError(f.field, f.rule, f.value) for f in status.field_errors],
        [SpellingSuggestion(s.word, list(s.suggestions)) for s in status.suggestions],
        status.retry_after_ms,
    )
