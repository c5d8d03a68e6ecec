"""A ``JobRow``'s buttons: Stop, Pause / Resume, Re-run and Remove, and what a click does.

A mixin of :class:`~jobmagic.notebook.panel_row.JobRow` (its own module to keep that
one readable in a sitting); every field is the row's, guarded by its ``_lock``. A click
runs on the kernel's widget-callback thread, while cells run: each action is one at a
time, and a failure is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError

from .shared_parts import SharedParts

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

# The row's logger: what a click could not do is told under the name it always had.
logger = logging.getLogger("jobmagic.notebook.panel_row")


class RowButtons:
    """The buttons part of ``JobRow``."""

    # The row's (set by JobRow.__init__).
    worker: Worker
    state: JobState
    stop_button: Any
    _shared: SharedParts
    _remove: Callable[[int], None] | None
    _lock: threading.RLock
    _pause_button: Any
    _rerun_button: Any
    _remove_button: Any
    _pause_requested: bool
    _stop_requested: bool
    _acting: set[str]
    _closed: bool

    if TYPE_CHECKING:

        def refresh(self, queue_reason: str | None = None) -> None:
            """The row's ``refresh``."""
            ...

    def _make_pause_button(self) -> Any:
        """The Pause / Resume button, showing ``state`` (lock held, or in __init__)."""
        look = self._pause_look()
        button = self._shared.make_button(
            look.pop("description"), look.pop("icon"), look.pop("tooltip"), "jobmagic-pause", **look
        )
        button.on_click(self._on_pause)
        return button

    def _make_finished_buttons(self) -> None:
        """Make Re-run and (given ``remove``) Remove (lock held, or in __init__)."""
        job = self.worker.id
        self._rerun_button = self._shared.make_button(
            "Re-run", "redo", f"Start job {job}'s command again, as a new job", "jobmagic-rerun"
        )
        self._rerun_button.on_click(self._on_rerun)
        if self._remove is not None:
            self._remove_button = self._shared.make_button(
                "Remove", "trash", f"Delete job {job}'s record and log", "jobmagic-remove"
            )
            self._remove_button.on_click(self._on_remove)

    def _pause_look(self) -> dict[str, Any]:
        """What the Pause / Resume button shows for ``state`` (lock held, or in __init__)."""
        paused = self.state is JobState.PAUSED
        job = self.worker.id
        return {
            "description": "Resume" if paused else "Pause",
            "icon": "play" if paused else "pause",
            "tooltip": (
                f"Let job {job} go on (SIGCONT to the whole job)"
                if paused
                else f"Hold job {job} still (SIGSTOP to the whole job); its runtime stops"
            ),
            "disabled": self._pause_requested or self._stop_requested,
        }

    def _render_pause_button(self) -> None:
        """Show ``state`` on the Pause / Resume button, in one message (lock held).

        Not once the job has ended: the button is out of the row then, unseen.
        """
        button = self._pause_button
        if button is None or not self.state.is_active:
            return
        with button.hold_sync():  # one message for all that changed, none if nothing did
            for name, value in self._pause_look().items():
                setattr(button, name, value)

    def _on_stop(self, _button: Any) -> None:
        with self._lock:
            self._stop_requested = True
            self._render_pause_button()  # a job being stopped is not paused or resumed
        self.stop_button.disabled = True
        try:
            # wait=False: the callback returns at once; the "state" event updates the row.
            self.worker.stop(wait=False, by="ui")
        except Exception:
            logger.exception("stopping job %s failed", self.worker.id)
            with self._lock:
                self._stop_requested = False
            self.refresh()

    def _on_pause(self, _button: Any) -> None:
        with self._lock:
            # click() calls back even on a disabled button: one request at a time.
            if self._closed or self._pause_requested or not self.state.is_active:
                return
            self._pause_requested = True
            resume = self.state is JobState.PAUSED  # what the button offered
            self._render_pause_button()
        verb = "resuming" if resume else "pausing"
        try:
            # Quick (a signal and a store write), so done here; the "state" event that
            # it sends updates the rows of every panel.
            if resume:
                self.worker.resume()
            else:
                self.worker.pause()
        except JobmagicError as exc:
            # It ended meanwhile, or the move could not be recorded: the refresh below
            # shows how the job stands.
            logger.warning("%s job %s failed: %s", verb, self.worker.id, exc)
        except Exception:
            logger.exception("%s job %s failed", verb, self.worker.id)
        finally:
            with self._lock:
                self._pause_requested = False
        # Also when the event's render came first: it showed the button still disabled.
        self.refresh()

    def _on_rerun(self, _button: Any) -> None:
        # A store write and a start: quick. The new job's "added" event brings its row.
        self._act_once("re-running", self.worker.restart)

    def _on_remove(self, _button: Any) -> None:
        remove = self._remove
        if remove is not None:
            # Its "removed" event drops the row from every panel.
            self._act_once("removing", lambda: remove(self.worker.id or 0))

    def _act_once(self, verb: str, action: Callable[[], object]) -> None:
        """Run a button's ``action``, one at a time (a double click does it once).

        A failure is logged, never raised: it is a widget callback.
        """
        with self._lock:
            if self._closed or verb in self._acting:
                return
            self._acting.add(verb)
        try:
            action()
        except JobmagicError as exc:
            logger.warning("%s job %s failed: %s", verb, self.worker.id, exc)
        except Exception:
            logger.exception("%s job %s failed", verb, self.worker.id)
        finally:
            with self._lock:
                self._acting.discard(verb)
