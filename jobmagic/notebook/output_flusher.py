"""``OutputFlusher``: one thread and one render budget for every output widget it feeds.

Each shown output (an ``OutputWidgetHandler``) only records what it was fed and marks
itself dirty here; the flusher's one thread pushes the dirty ones' newest views in
rounds, at most every ``min_interval`` seconds, spacing the rounds so that all of them
together send at most about ``max_bytes_per_second`` bytes a second. Eight shown outputs
thus cost the kernel about what one does: one thread, one throttle, one budget split
among those that changed, instead of eight of each competing with the kernel's main
thread for the GIL and for Jupyter's iopub rate limit.

By default every handler of the process shares one flusher (``default_flusher()``): the
limits that matter, Jupyter's iopub rate limit and the kernel's GIL, are the kernel's,
whatever the number of panels, and two panels showing the same job would otherwise
double what it costs. The thread runs while some output is attached, and waits untimed
while none has changed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

__all__ = ["OutputFlusher", "OutputSlot", "default_flusher"]

logger = logging.getLogger(__name__)

#: ``push(shown)``: show the newest view if its version is not ``shown``; returns the
#: version now shown and the bytes sent (0: nothing was, the view had not changed).
PushFunction = Callable[[int], tuple[int, int]]


class OutputSlot:
    """One output attached to an ``OutputFlusher``: what it pushed and when it may again.

    Made by ``OutputFlusher.attach``; hand it back to that flusher's ``mark_dirty``,
    ``flush`` and ``detach``. Every field is guarded by the flusher's lock.
    """

    def __init__(
        self, push: PushFunction, min_interval: float, max_bytes_per_second: int, shown: int
    ) -> None:
        self.push = push
        self.min_interval = min_interval
        self.max_bytes_per_second = max_bytes_per_second
        self.shown = shown  # the version the widget shows
        # flush() wants this version shown outside the throttle. A version, not a flag:
        # a push already under way when flush() asks does not answer it.
        self.wanted = shown
        self.next_push = 0.0  # time.monotonic() before which this output's own limits hold it
        self.pushing = False  # the flusher thread is in push() for it
        self.attached = True


class OutputFlusher:
    """Push the views of many outputs from one thread, throttled by one shared budget.

    A round pushes every dirty output whose own limits allow it (the one dirty longest
    first) and only those whose view changed, each with its newest view; the next round
    comes ``min_interval`` seconds later at the earliest, and later still when the round
    was large: a round that sent ``n`` bytes is followed by ``n / max_bytes_per_second``
    seconds without one. ``flush()`` pushes one output at once, outside the throttle
    (what it sends counts against the budget all the same).

    Each output also keeps its own limits (``attach``'s ``min_interval`` and
    ``max_bytes_per_second``), which hold it back further when they are stricter.

    Parameters
    ----------
    min_interval : float
        Seconds between two rounds, at least; default 0.1 (10 rounds a second).
    max_bytes_per_second : int
        Soft cap on the bytes all the outputs send per second together; default 100,000.
    """

    def __init__(self, min_interval: float = 0.1, max_bytes_per_second: int = 100_000) -> None:
        if min_interval < 0 or max_bytes_per_second <= 0:
            raise ValueError("min_interval must be >= 0, max_bytes_per_second must be > 0")
        self.min_interval = min_interval
        self.max_bytes_per_second = max_bytes_per_second
        # Guards every field below and every field of the attached slots. Two conditions
        # on it: the thread waits on _work for something to push (or to end), flush()
        # and detach() wait on _pushed for the thread's pushes.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._pushed = threading.Condition(self._lock)
        self._slots: set[OutputSlot] = set()
        self._dirty: dict[OutputSlot, None] = {}  # changed since their last push, oldest first
        self._thread: threading.Thread | None = None  # runs while _slots is not empty
        self._next_round = 0.0  # time.monotonic() before which no round starts
        # When the thread looks at _dirty next, at the latest: a slot marked dirty wakes
        # it only if it is due earlier. 0 while it works, inf while it waits untimed.
        self._wake_at = 0.0

    @property
    def thread(self) -> threading.Thread | None:
        """The flusher's thread, or None while no output is attached."""
        with self._lock:
            return self._thread

    def attach(
        self,
        push: PushFunction,
        *,
        min_interval: float = 0.0,
        max_bytes_per_second: int = 100_000,
        shown: int = 0,
    ) -> OutputSlot:
        """Start pushing an output: ``push(shown)`` is called from the flusher's thread.

        Parameters
        ----------
        push : callable
            ``push(shown) -> (version, bytes)``: shows the output's newest view unless its
            version is ``shown``, and returns the version now shown and the bytes sent (0
            when none were). It must not raise (what it raises is logged); it runs
            without the flusher's lock, and only on its thread.
        min_interval : float
            This output's own least interval between two pushes, in seconds.
        max_bytes_per_second : int
            This output's own soft cap on what it sends, in bytes per second.
        shown : int
            The version the output shows now.
        """
        slot = OutputSlot(push, min_interval, max_bytes_per_second, shown)
        with self._lock:
            self._slots.add(slot)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobmagic-output-flush", daemon=True
                )
                self._thread.start()
        return slot

    def mark_dirty(self, slot: OutputSlot) -> None:
        """Note that ``slot``'s view changed: the thread pushes it when the budget allows."""
        with self._lock:
            if not slot.attached or slot in self._dirty:
                return
            self._dirty[slot] = None
            if max(self._next_round, slot.next_push) < self._wake_at:
                self._work.notify()

    def flush(self, slot: OutputSlot, version: int, timeout: float | None = None) -> bool:
        """Push ``slot`` now, outside the throttle, and wait until it shows ``version``.

        Returns True once it does (or it was detached), False after ``timeout`` seconds
        (None: no limit) or when called from the flusher's own thread (from a widget
        callback during a push: that would wait for itself; it pushes next anyway).
        """
        with self._lock:
            if not slot.attached or slot.shown >= version:
                return True
            if threading.current_thread() is self._thread:
                self._dirty.setdefault(slot)
                return False
            slot.wanted = max(slot.wanted, version)
            self._dirty.setdefault(slot)
            self._work.notify()
            return self._pushed.wait_for(
                lambda: not slot.attached or slot.shown >= version, timeout
            )

    def detach(self, slot: OutputSlot) -> None:
        """Stop pushing ``slot``; once this returns, its ``push`` is not called again.

        A push under way is waited for (unless this is the flusher's own thread). The
        thread ends with the last slot.
        """
        me = threading.current_thread()
        with self._lock:
            if not slot.attached:
                return
            slot.attached = False
            self._slots.discard(slot)
            self._dirty.pop(slot, None)
            if me is not self._thread:
                self._pushed.wait_for(lambda: not slot.pushing)
            self._pushed.notify_all()  # flush() callers waiting on it return
            thread = None
            if not self._slots:
                thread, self._thread = self._thread, None
                self._work.notify()
        if thread is not None and thread is not me:
            thread.join()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                batch = self._next_batch(me)
            if batch is None:
                return
            sent = sum(self._push(slot) for slot in batch)
            with self._lock:
                if sent:
                    pause = max(self.min_interval, sent / self.max_bytes_per_second)
                    self._next_round = max(self._next_round, time.monotonic() + pause)

    def _next_batch(self, me: threading.Thread) -> list[OutputSlot] | None:
        """Wait for the slots to push next and take them out of _dirty (lock held).

        None when the thread is to end. Waits with a timeout only for a throttle's end.
        """
        while self._thread is me:
            urgent = [slot for slot in self._dirty if slot.wanted > slot.shown]
            now = time.monotonic()
            due = urgent
            if not due and now >= self._next_round:
                due = [slot for slot in self._dirty if slot.next_push <= now]
            if due:
                for slot in due:
                    del self._dirty[slot]
                self._wake_at = 0.0
                return due
            if self._dirty:
                earliest = min(slot.next_push for slot in self._dirty)
                self._wake_at = max(self._next_round, earliest)
                self._work.wait(self._wake_at - now)
            else:
                self._wake_at = math.inf
                self._work.wait()
        return None

    def _push(self, slot: OutputSlot) -> int:
        """Push one slot's view (no lock held); return the bytes sent."""
        with self._lock:
            if not slot.attached:
                return 0
            slot.pushing = True
            shown = slot.shown
        try:
            version, size = slot.push(shown)
        except Exception:  # a failed update must not end the updates of every output
            logger.exception("updating an output widget failed")
            version, size = -1, 0
        with self._lock:
            slot.pushing = False
            # After a failure, flush() callers are answered all the same: waiting would
            # not make the push succeed.
            slot.shown = max(slot.shown, version if version >= 0 else slot.wanted)
            if size:
                pause = max(slot.min_interval, size / slot.max_bytes_per_second)
                slot.next_push = time.monotonic() + pause
            self._pushed.notify_all()
        return size


_default: OutputFlusher | None = None
_default_lock = threading.Lock()  # guards _default


def default_flusher() -> OutputFlusher:
    """The process's shared ``OutputFlusher`` (made on first use, default limits)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = OutputFlusher()
        return _default
