"""A pass (a reconcile, a look at the store's version) that one run does for many callers.

Each request of the server, each inotify event and each exit may ask for the same pass
over the store. Run once per ask, a burst of asks would queue as many store calls; run
once for all the asks made before it begins, the burst costs at most two runs (the one
under way, and one more for the asks that came during it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


class CoalescedPass:
    """Runs ``run_pass`` on the event loop when asked; asks made before a run begins share it.

    ``wait()`` returns once a run that began after the call has ended: what the pass
    looked at (the store) was then at least as new as at the call. Runs never overlap.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop the runs (and every method) are called on.
    run_pass : Callable[[], Awaitable[None]]
        One run of the pass.
    log : logging.Logger
        Where the errors of runs that only ``soon()`` asked for go.
    what : str
        The pass's name in those errors.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_pass: Callable[[], Awaitable[None]],
        log: logging.Logger,
        what: str,
    ) -> None:
        self._loop = loop
        self._run_pass = run_pass
        self._log = log
        self._what = what
        # The next run's future while that run has not begun; None when none is asked for.
        self._next: asyncio.Future[None] | None = None
        # Whether soon() asked for the next run (its errors are then logged here).
        self._next_in_background = False
        self._runner: asyncio.Task[None] | None = None
        # The future of the run under way; None between runs.
        self._current: asyncio.Future[None] | None = None
        self._closed = False

    async def wait(self) -> None:
        """Return once a run that began after this call has ended; raise what it raised."""
        # Shielded: the future is shared, a caller that is cancelled must not cancel it.
        await asyncio.shield(self._ask())

    async def idle(self) -> None:
        """Return once the runs asked for before this call have ended: at once when none is.

        Not the runs asked for later (passes asked for without end would never let it
        return). Never cancels a run, and never raises what a run raised (its callers
        hear that).
        """
        last = self._next or self._current
        if last is not None:
            await asyncio.wait({last})

    def soon(self) -> None:
        """Ask for a run that nobody waits for (from a callback); its errors are logged."""
        if self._closed:
            return
        self._ask()
        self._next_in_background = True

    def close(self) -> None:
        """Stop running; a run asked for and not begun is cancelled. Idempotent."""
        self._closed = True
        if self._loop.is_closed():
            return  # (at exit) nothing will run again, and nothing can be scheduled
        if self._runner is not None:
            self._runner.cancel()
        if self._next is not None:
            self._next.cancel()
            self._next = None

    def _ask(self) -> asyncio.Future[None]:
        if self._closed:
            raise RuntimeError(f"the jobmagic {self._what} was closed")
        if self._next is None:
            self._next = self._loop.create_future()
        if self._runner is None:
            self._runner = self._loop.create_task(self._runs())
        return self._next

    async def _runs(self) -> None:
        try:
            while self._next is not None:
                done, self._next = self._next, None
                self._current = done
                in_background, self._next_in_background = self._next_in_background, False
                try:
                    await self._run_pass()
                except asyncio.CancelledError:
                    done.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to the callers, or logged
                    if in_background:
                        self._log.exception("jobmagic: error in the %s", self._what)
                    done.set_exception(exc)
                    if in_background:
                        done.exception()  # logged above: no "never retrieved" warning
                else:
                    done.set_result(None)
        finally:
            self._runner = self._current = None
