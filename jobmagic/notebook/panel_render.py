"""What the ``JobPanel``'s thread renders besides rows: clocks, rows shown, the header.

The clocks (runtimes, "3 min ago") tick within a message budget; the filter picks the
rows the box shows; the header counts the jobs per state. A mixin of
:class:`~jobmagic.notebook.panel.JobPanel` (its own module to keep that one readable in a
sitting); it runs on the panel's thread only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from jobmagic.core.state import JobState

from .panel_row import JobRow
from .row_summary import badge

_TICK_SECONDS = 1.0  # the runtime clock's period while some job runs
_TICKS_PER_SECOND = 10  # at most this many rows are re-sent per tick second
# With nothing running, how often the finished rows' "3 min ago" is looked at: it moves
# once a minute at most, so it lags by this much at most.
_CLOCK_SECONDS = 15.0


#: The filter's values: every row, or only those of jobs that have not ended.
ALL, RUNNING = "all", "running"


class PanelRendering:
    """The rendering part of ``JobPanel``."""

    # The panel's (set by JobPanel.__init__); the two fields by its thread only.
    counts: Any
    filter: Any
    rows_box: Any
    stop_all_button: Any
    _ticking: bool  # some row's clock moves
    _next_tick: float  # time.monotonic() of the next tick

    if TYPE_CHECKING:

        @property
        def rows(self) -> dict[int, JobRow]:
            """The panel's ``rows``."""
            ...

    def _tick(self, rows: dict[int, JobRow], refreshed: set[int]) -> None:
        """Tick the clocks that move, if it is time: at most _TICKS_PER_SECOND rows a second.

        RUNNING rows tick every second (runtime, progress); a PAUSED job's runtime does
        not grow. The others' "3 min ago" is rendered again when its wording moved.
        """
        running = [i for i, row in rows.items() if row.state is JobState.RUNNING]
        now = time.monotonic()
        # With nothing running, the next tick was set a _CLOCK_SECONDS period away: a job
        # that starts meanwhile ticks at once (its row, just rendered, is skipped).
        periods = -(-len(running) // _TICKS_PER_SECOND)
        if now < self._next_tick and not (
            running and self._next_tick - now > _TICK_SECONDS * periods
        ):
            self._ticking = bool(running) or bool(rows)
            return
        for job_id in running:
            if job_id not in refreshed:
                rows[job_id].tick()
        # With many running jobs the clock slows down, to _TICKS_PER_SECOND messages a second.
        budget = periods * _TICKS_PER_SECOND - len(running)
        wall = time.time()
        moved = [
            row
            for job_id, row in rows.items()
            if job_id not in refreshed and row.state is not JobState.RUNNING
            if row.clock_moved(wall)
        ]
        budget = max(budget, _TICKS_PER_SECOND if not running else 0)
        for row in moved[:budget]:
            row.refresh()
        if running or len(moved) > budget:
            self._next_tick = now + _TICK_SECONDS * max(periods, 1)
        else:
            self._next_tick = now + _CLOCK_SECONDS
        self._ticking = bool(running) or bool(rows)

    def _layout_rows(self) -> None:
        rows = self.rows
        only_unfinished = self.filter.value == RUNNING
        self.rows_box.children = tuple(
            rows[i].widget
            for i in sorted(rows)
            if not (only_unfinished and rows[i].state.is_finished)
        )

    def _render_header(self) -> None:
        rows = self.rows.values()
        counts = dict.fromkeys(JobState, 0)
        for row in rows:
            counts[row.state] += 1
        parts = [
            badge(state, f"{state.value} {counts[state]}") for state in JobState if counts[state]
        ]
        self.counts.value = (
            '<div class="jobmagic-counts" style="display:flex;gap:0.4em;align-items:center">'
            f"<b>Jobs</b> {' '.join(parts) or 'none'}</div>"
        )
        active = counts[JobState.RUNNING] + counts[JobState.PAUSED] + counts[JobState.QUEUED]
        self.stop_all_button.disabled = active == 0
