"""``CoalescedPass``: asks made before a run begins share it; ``idle`` waits out the runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jobmagic.server.coalesced import CoalescedPass

pytestmark = pytest.mark.timeout(30)
_log = logging.getLogger("test_coalesced")


class Gated:
    """A pass that counts its runs and ends each only when the test opens its gate."""

    def __init__(self) -> None:
        self.runs = 0
        self.began = asyncio.Event()
        self.gate = asyncio.Event()
        self.fail = False

    async def __call__(self) -> None:
        self.runs += 1
        self.began.set()
        await self.gate.wait()
        self.gate.clear()
        if self.fail:
            raise RuntimeError("the pass failed")


def test_idle_returns_at_once_when_no_run_was_asked_for() -> None:
    async def main() -> int:
        gated = Gated()
        passes = CoalescedPass(asyncio.get_running_loop(), gated, _log, "test pass")
        await asyncio.wait_for(passes.idle(), 5)
        passes.close()
        return gated.runs

    assert asyncio.run(main()) == 0


def test_idle_waits_for_the_run_under_way_and_the_one_asked_during_it() -> None:
    async def main() -> list[object]:
        gated = Gated()
        passes = CoalescedPass(asyncio.get_running_loop(), gated, _log, "test pass")
        passes.soon()
        await gated.began.wait()
        gated.began.clear()
        passes.soon()  # during the first run: one more run
        passes.soon()  # ... shared with this ask
        idle = asyncio.ensure_future(passes.idle())
        seen: list[object] = []
        gated.gate.set()  # the first run ends
        await gated.began.wait()  # the second begins
        seen.append((gated.runs, idle.done()))
        gated.gate.set()
        await asyncio.wait_for(idle, 5)
        seen.append(gated.runs)
        passes.close()
        return seen

    assert asyncio.run(main()) == [(2, False), 2]


def test_idle_does_not_wait_for_runs_asked_for_after_it() -> None:
    async def main() -> tuple[int, bool]:
        gated = Gated()
        passes = CoalescedPass(asyncio.get_running_loop(), gated, _log, "test pass")
        passes.soon()
        await gated.began.wait()
        gated.began.clear()
        idle = asyncio.ensure_future(passes.idle())
        await asyncio.sleep(0)
        passes.soon()  # after idle() was called
        gated.gate.set()
        await asyncio.wait_for(idle, 5)  # the first run ended: the second is not waited for
        await gated.began.wait()
        runs, still_running = gated.runs, passes._runner is not None
        gated.gate.set()
        passes.close()
        return runs, still_running

    assert asyncio.run(main()) == (2, True)


def test_idle_neither_raises_a_runs_error_nor_cancels_it_when_cancelled() -> None:
    async def main() -> tuple[bool, int, str]:
        gated = Gated()
        gated.fail = True
        passes = CoalescedPass(asyncio.get_running_loop(), gated, _log, "test pass")
        waiter = asyncio.ensure_future(passes.wait())
        await gated.began.wait()
        cancelled = asyncio.ensure_future(passes.idle())
        await asyncio.sleep(0)
        cancelled.cancel()
        idle = asyncio.ensure_future(passes.idle())
        gated.gate.set()
        await asyncio.wait_for(idle, 5)  # returns, though the run raised
        try:
            await waiter
        except RuntimeError as exc:
            error = str(exc)
        passes.close()
        return cancelled.cancelled(), gated.runs, error

    assert asyncio.run(main()) == (True, 1, "the pass failed")
