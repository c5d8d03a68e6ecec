"""The exceptions jobmagic's library API raises."""

from __future__ import annotations


class JobmagicError(Exception):
    """Raised when jobmagic cannot do what was asked; the base of its other errors."""


class JobNotFound(JobmagicError, LookupError):
    """Raised when no job has the id or name that was asked for."""


class JobNameInUse(JobmagicError, ValueError):
    """Raised when a job is started with the name of a job that is still running."""


class StoreError(JobmagicError):
    """Raised when the job store cannot be opened, read or written."""


class LaunchError(JobmagicError):
    """Raised when a backend cannot start a job; the message says why in one line."""


class UnknownBackend(JobmagicError, ValueError):
    """Raised when a job names a backend jobmagic does not have."""
