"""Domain errors, shared by every part and mapped to HTTP statuses in one middleware.

    StepwatchError
    ├── InvalidInput      400  a value does not fit (bad band, unknown step, bad origin ...)
    ├── NotFound          404  no such site, flag, assignment ...
    ├── Forbidden         403  the actor may not do this
    └── Conflict          409  the thing exists already, or the transition is not allowed

Storage failures are not domain errors: see kernel.storage.StorageUnavailable.
"""

from __future__ import annotations


class StepwatchError(Exception):
    """Base of the errors a user can cause and be told about; `field` names the form field at fault.

    `code` (with its `values`), when given, says the same thing as the English message for a program
    and for the dashboards' catalog, which words it in the reader's language."""

    status = 400

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None,
                 values: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.code = code
        self.values = dict(values or {})


class InvalidInput(StepwatchError):
    status = 400


class NotFound(StepwatchError):
    status = 404


class Forbidden(StepwatchError):
    status = 403


class Conflict(StepwatchError):
    status = 409
