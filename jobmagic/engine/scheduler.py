"""Admission: when a queued job may start.

Every job goes through the scheduler between being added and being launched. For now
every job is admitted the moment it is submitted; a queue with limits (groups,
dependencies, device pools) will decide here, in one place, without the worker or the
service changing.
"""

from __future__ import annotations

from typing import Protocol


class Admittable(Protocol):
    """A job the scheduler can start."""

    def launch(self) -> None:
        """Start the job now."""
        ...


class Scheduler:
    """Decides when submitted jobs start: at once, for now."""

    def submit(self, job: Admittable) -> None:
        """A job is ready to run; launch it when it is admitted (now)."""
        job.launch()
