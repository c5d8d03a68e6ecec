"""OutputFlusher: many OutputWidgetHandlers, one thread, one throttle, one budget.

The handlers write into real ``ipywidgets.HTML`` widgets (no kernel comm needed); every
update of a widget is recorded by a trait observer, which runs on the thread that set
the value. Waits are handshakes on those observers, each with a timeout.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import pytest

from jobmagic.notebook.output_flusher import OutputFlusher, default_flusher
from jobmagic.notebook.output_widget import OutputWidgetHandler

pytestmark = pytest.mark.timeout(60)

THREAD_NAME = "jobmagic-output-flush"


class Recorder:
    """Records every update of some widgets: (time.monotonic(), widget index, size, thread)."""

    def __init__(self, widgets: list[Any]) -> None:
        self.updates: list[tuple[float, int, int, threading.Thread]] = []
        self._cond = threading.Condition()
        self._widgets = widgets
        self._observers = []
        for index, widget in enumerate(widgets):
            observer = self._observer(index)
            widget.observe(observer, names="value")
            self._observers.append(observer)

    def _observer(self, index: int) -> Callable[[dict[str, Any]], None]:
        def on_change(change: dict[str, Any]) -> None:
            with self._cond:
                self.updates.append(
                    (time.monotonic(), index, len(change["new"]), threading.current_thread())
                )
                self._cond.notify_all()

        return on_change

    def count(self, index: int) -> int:
        with self._cond:
            return sum(1 for update in self.updates if update[1] == index)

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking it after each update."""
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "timed out waiting for updates"

    def close(self) -> None:
        for widget, observer in zip(self._widgets, self._observers, strict=True):
            widget.unobserve(observer, names="value")


def flush_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def context_switches(thread: threading.Thread) -> int:
    """How often ``thread`` has given up the CPU so far (voluntary context switches)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


@pytest.fixture
def flusher() -> Iterator[OutputFlusher]:
    flusher = OutputFlusher()
    yield flusher
    assert flusher.thread is None, "a test left a handler attached"


def make_handlers(
    n: int, flusher: OutputFlusher, **options: Any
) -> tuple[list[OutputWidgetHandler], Recorder]:
    handlers = [
        OutputWidgetHandler(widget=ipywidgets.HTML(), flusher=flusher, **options) for _ in range(n)
    ]
    return handlers, Recorder([h.widget for h in handlers])


def close_all(handlers: list[OutputWidgetHandler], recorder: Recorder) -> None:
    recorder.close()
    for handler in handlers:
        handler.close()
        handler.widget.close()


def test_twenty_handlers_share_one_thread_which_ends_with_the_last(
    flusher: OutputFlusher,
) -> None:
    threads_before = set(threading.enumerate())
    handlers, recorder = make_handlers(20, flusher)
    try:
        for i, handler in enumerate(handlers):
            handler.feed(f"output {i}\n")
        recorder.wait(lambda: all(recorder.count(i) >= 1 for i in range(20)))
        thread = flusher.thread
        assert thread is not None
        assert set(threading.enumerate()) - threads_before == {thread}
        assert {update[3] for update in recorder.updates} == {thread}  # its only writer
        for i, handler in enumerate(handlers):
            assert f"output {i}" in handler.widget.value
        for handler in handlers[:-1]:
            handler.close()
        assert flusher.thread is thread  # one handler is still attached
    finally:
        close_all(handlers, recorder)
    assert flusher.thread is None
    assert not thread.is_alive()  # joined by the last close()
    assert set(threading.enumerate()) == threads_before


def test_eight_busy_handlers_share_one_byte_budget() -> None:
    # ~2 KB of HTML per update; rounds of 8 updates (~16 KB) spaced by the budget.
    budget = 20_000
    flusher = OutputFlusher(min_interval=0.1, max_bytes_per_second=budget)
    handlers, recorder = make_handlers(8, flusher, tail_lines=20)
    line = "x" * 90
    try:
        # Fed continuously, one line per handler in turn, until each has had 3 updates.
        counter = itertools.count()
        while not all(recorder.count(i) >= 3 for i in range(8)):
            n = next(counter)
            handlers[n % 8].feed(f"{n} {line}\n")
            assert n < 50_000_000, "the handlers were not updated"
    finally:
        close_all(handlers, recorder)
    updates = recorder.updates
    first, last = updates[0][0], updates[-1][0]
    sent = sum(size for _at, _index, size, _thread in updates)
    largest_round = 8 * max(size for _at, _index, size, _thread in updates)
    # Everything sent before the last round fits the one budget of the eight handlers:
    # eight cost what one would (a flush thread each would have sent 8 x the budget).
    assert sent - largest_round <= budget * (last - first)
    assert sent > largest_round  # several rounds went by
    # ... and no handler is updated more often than every min_interval.
    for index in range(8):
        times = [at for at, i, _size, _thread in updates if i == index]
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.09


def test_each_handler_keeps_its_own_slower_interval(flusher: OutputFlusher) -> None:
    slow = OutputWidgetHandler(widget=ipywidgets.HTML(), flusher=flusher, min_interval=0.5)
    fast = OutputWidgetHandler(widget=ipywidgets.HTML(), flusher=flusher)
    recorder = Recorder([slow.widget, fast.widget])
    try:
        n = 0
        while recorder.count(0) < 3:
            slow.feed(f"slow {n}\n")
            fast.feed(f"fast {n}\n")
            n += 1
    finally:
        close_all([slow, fast], recorder)
    slow_times = [at for at, i, _size, _thread in recorder.updates if i == 0]
    assert min(b - a for a, b in itertools.pairwise(slow_times)) >= 0.45
    assert recorder.count(1) > recorder.count(0)  # the other one is not held back


def test_flush_shows_everything_fed_outside_the_throttle() -> None:
    # A throttle so slow that only flush() can explain an update after the first.
    flusher = OutputFlusher(min_interval=60.0, max_bytes_per_second=1)
    handlers, recorder = make_handlers(8, flusher)
    try:
        never_fed = OutputWidgetHandler(flusher=flusher)
        never_fed.flush()  # returns at once: nothing to show
        never_fed.close()
        for handler in handlers:
            handler.feed("first\n")
        handlers[0].flush()
        recorder.wait(lambda: len(recorder.updates) >= 1)
        for round_ in range(3):
            for i, handler in enumerate(handlers):
                for k in range(100):
                    handler.feed(f"handler {i} round {round_} line {k}\n")
            start = time.monotonic()
            for handler in handlers:
                handler.flush()
            assert time.monotonic() - start < 5.0  # not the throttle's 60 s
            for i, handler in enumerate(handlers):
                assert f"handler {i} round {round_} line 99\n" in handler.text()
                assert f"handler {i} round {round_} line 99" in handler.widget.value
        flushes = [h.flush_count for h in handlers]
        for handler in handlers:
            handler.flush()  # nothing new: nothing sent
        assert [h.flush_count for h in handlers] == flushes
    finally:
        close_all(handlers, recorder)


def test_close_detaches_and_the_widget_is_not_written_again(flusher: OutputFlusher) -> None:
    handlers, recorder = make_handlers(2, flusher)
    closed, kept = handlers
    try:
        closed.feed("before close\n")
        kept.feed("before close\n")
        closed.flush()
        kept.flush()
        thread = flusher.thread
        closed.close()
        value, count = closed.widget.value, closed.flush_count
        for i in range(1000):
            closed.feed(f"after close {i}\n")
            kept.feed(f"after close {i}\n")
        kept.flush()
        assert "after close 999" in kept.widget.value
        assert closed.widget.value == value
        assert closed.flush_count == count
        assert recorder.count(0) == count
        assert flusher.thread is thread  # the other handler still needs it
    finally:
        close_all(handlers, recorder)
    assert flusher.thread is None
    assert thread is not None
    assert not thread.is_alive()

    # A later handler starts a thread again.
    again, recorder = make_handlers(1, flusher)
    try:
        again[0].feed("again\n")
        again[0].flush()
        assert "again" in again[0].widget.value
    finally:
        close_all(again, recorder)


def test_the_thread_waits_untimed_while_nothing_changes(flusher: OutputFlusher) -> None:
    handlers, recorder = make_handlers(8, flusher)
    try:
        for handler in handlers:
            handler.feed("some output\n")
        for handler in handlers:
            handler.flush()
        thread = flusher.thread
        assert thread is not None
        # Let a pending round (if any) end, then see the thread stay asleep.
        recorder.wait(lambda: all(recorder.count(i) >= 1 for i in range(8)))
        threading.Event().wait(0.2)  # > min_interval: the last throttle has run out
        switches = context_switches(thread)
        counts = [h.flush_count for h in handlers]
        threading.Event().wait(0.5)
        assert context_switches(thread) == switches  # not one wake-up: no polling
        assert [h.flush_count for h in handlers] == counts
    finally:
        close_all(handlers, recorder)


def test_a_failing_widget_does_not_stop_the_others(
    flusher: OutputFlusher, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenWidget:
        """Stands in for a widget whose update raises."""

        def __setattr__(self, name: str, value: Any) -> None:
            raise RuntimeError("frontend gone")

    broken = OutputWidgetHandler(widget=BrokenWidget(), flusher=flusher)
    handlers, recorder = make_handlers(1, flusher)
    try:
        broken.feed("lost\n")
        handlers[0].feed("shown\n")
        start = time.monotonic()
        broken.flush()  # answered, not left to time out
        assert time.monotonic() - start < 4.0
        handlers[0].flush()
        assert "shown" in handlers[0].widget.value
        assert "updating the output widget failed" in caplog.text
    finally:
        broken.close()
        close_all(handlers, recorder)


def test_a_widget_callback_may_flush_and_close_handlers(flusher: OutputFlusher) -> None:
    # Observers run on the flusher's thread: they must neither wait for it nor join it.
    handlers, recorder = make_handlers(2, flusher)
    first, second = handlers
    done = threading.Event()

    def on_change(_change: Any) -> None:
        second.flush()
        first.flush()
        first.close()
        done.set()

    first.widget.observe(on_change, names="value")
    try:
        second.feed("second\n")
        first.feed("first\n")
        assert done.wait(10)
        second.feed("more\n")
        second.flush()
        assert "more" in second.widget.value
    finally:
        first.widget.unobserve(on_change, names="value")
        close_all(handlers, recorder)


def test_a_standalone_handler_uses_the_process_wide_flusher() -> None:
    threads_before = len(flush_threads())
    first = OutputWidgetHandler()
    second = OutputWidgetHandler(tail_lines=5)
    try:
        assert first.flusher is default_flusher()
        assert second.flusher is first.flusher
        for i in range(100):
            first.feed(f"first {i}\n")
            second.feed(f"second {i}\n")
        first.flush()
        second.flush()
        assert "first 99" in first.widget.value
        assert "second 99" in second.widget.value
        assert "second 94" not in second.widget.value  # its own tail of 5 lines
        assert len(flush_threads()) <= max(threads_before, 1)
    finally:
        first.close()
        second.close()
        first.widget.close()
        second.widget.close()
