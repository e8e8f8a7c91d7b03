"""The exporter's exceptions.

Lower layers raise; only the poll cycle catches, and each `PollError` class maps to one value
of the `reason` label of ``alvaria_emailqueue_poll_errors_total``::

    ExporterError
    ├── ConfigError              exit code 2, names the setting and where it came from
    │   └── ConfigErrors         several of them, reported together (one line each)
    └── PollError                one failed poll of one organisation
        ├── AuthError            reason="auth"          credentials refused: token endpoint 401/403
        │                                               or OAuth2 refusal, no usable token in a 200,
        │                                               emails 401 after refresh, 403
        ├── RateLimitedError     reason="rate_limited"  429 after every retry
        ├── ClientHTTPError      reason="http_4xx"      other 4xx (404 unknown org, 400 ...)
        ├── ServerHTTPError      reason="http_5xx"      5xx after every retry
        ├── OtherHTTPError       reason="http_other"    1xx or 3xx (redirects are never followed)
        ├── RequestTimeoutError  reason="timeout"       request timeout or poll deadline
        ├── ConnectionFailedError reason="connection"   refused, reset, DNS, TLS
        │                                               (failures of the token endpoint keep
        │                                               these reasons too: they are not `auth`)
        ├── DecodeError          reason="decode"        not JSON, wrong shape, body too large,
        │                                               204 or another 2xx without a JSON body
        └── InconsistentError    reason="inconsistent"  paging that does not add up

    (any other exception in a poll is a bug: reason="internal", logged with its traceback)

Messages never contain secrets, tokens or personal data: they are logged and shown on the
landing page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class ExporterError(Exception):
    """Base class of every error the exporter raises on purpose."""


class ConfigError(ExporterError):
    """An invalid setting; the process exits with code 2."""

    def __init__(self, setting: str, source: str, problem: str) -> None:
        self.setting = setting
        self.source = source
        self.problem = problem
        super().__init__(f"invalid setting {setting} (from {source}): {problem}")

    @property
    def all(self) -> tuple[ConfigError, ...]:
        """Every error this one stands for, in the order found."""
        return (self,)

    @property
    def summary(self) -> str:
        """The error without its problem text or any path or value: for an unauthenticated
        caller (`POST /-/reload`); the log has the whole message."""
        kind = []
        for word in self.source.split():
            if "/" in word or "=" in word or "(" in word:
                break
            kind.append(word)
        return f"invalid setting {self.setting} (from {' '.join(kind) or 'the configuration'})"


class ConfigErrors(ConfigError):
    """Every invalid setting found in one pass; reads as the first one where one is expected."""

    def __init__(self, errors: Sequence[ConfigError], warnings: Sequence[str] = ()) -> None:
        flat = tuple(e for error in errors for e in error.all)
        if not flat:
            raise ValueError("ConfigErrors needs at least one error")
        super().__init__(flat[0].setting, flat[0].source, flat[0].problem)
        self.errors = flat
        # Warnings found on the way (an unknown variable may explain a missing setting).
        self.warnings = tuple(warnings)

    @property
    def all(self) -> tuple[ConfigError, ...]:
        return self.errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class PollError(ExporterError):
    """A poll of one organisation failed; `reason` is its metric label."""

    reason: ClassVar[str] = "unknown"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        # Seconds the API asked us to wait (429 Retry-After); the poller honours it.
        self.retry_after: float | None = None
        super().__init__(message)


class AuthError(PollError):
    """Credentials refused: the token endpoint answered 401 or 403 or an OAuth2 refusal
    (invalid_client, invalid_scope), a 200 without a usable token, or the API answered 403, or
    401 even after a fresh token."""

    reason = "auth"


class RateLimitedError(PollError):
    """The API or the token endpoint answered 429 after every retry, or asked to wait
    (Retry-After) longer than the poll may."""

    reason = "rate_limited"


class ClientHTTPError(PollError):
    """Another 4xx: 404 (unknown organisation, wrong api_url or token_url), 400 (a filter
    refused) ..."""

    reason = "http_4xx"


class ServerHTTPError(PollError):
    """A 5xx after every retry (an HTML error page included)."""

    reason = "http_5xx"


class OtherHTTPError(PollError):
    """A 1xx or 3xx from the API or the token endpoint: redirects are never followed (they would
    carry the credentials elsewhere), so api_url or token_url points at the wrong place."""

    reason = "http_other"


class RequestTimeoutError(PollError):
    """A request took longer than request_timeout, or the poll its deadline of 3 x
    poll_interval."""

    reason = "timeout"


class ConnectionFailedError(PollError):
    """No answer: DNS, connection refused or reset, TLS failure, a body shorter than its
    Content-Length. Failures of the token endpoint keep this reason: they are not `auth`."""

    reason = "connection"


class DecodeError(PollError):
    """The answer is not a usable email list: not JSON, the wrong shape, too large
    (max_response_bytes), invalid UTF-8, nested too deep, a 204 or another 2xx without a JSON
    body."""

    reason = "decode"


class InconsistentError(PollError):
    """Paging that does not add up: more than max_pages pages, an empty first page while
    totalItems > 0, a short page with items after it, more items than maxResults."""

    reason = "inconsistent"


# A poll that failed on a bug rather than on the API: logged with its traceback.
INTERNAL_REASON = "internal"

POLL_ERROR_REASONS: tuple[str, ...] = (
    AuthError.reason,
    RateLimitedError.reason,
    ClientHTTPError.reason,
    ServerHTTPError.reason,
    OtherHTTPError.reason,
    RequestTimeoutError.reason,
    ConnectionFailedError.reason,
    DecodeError.reason,
    InconsistentError.reason,
    INTERNAL_REASON,
)
