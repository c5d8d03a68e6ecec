"""The extension's hooks: what ``%load_ext jobmagic`` and ``%unload_ext`` do.

Register the magics and how a job and a state display; wrap the kernel's restart; on a
notebook's kernel, take back the jobs a restart left running. And undo all of it.
"""

from __future__ import annotations

import contextlib
import os
import sys

from IPython.core.interactiveshell import InteractiveShell

from jobmagic.core.state import JobState
from jobmagic.engine.service import SESSION_ENV
from jobmagic.engine.worker import Worker

from . import kernel_restart
from .magics import JobMagics
from .reprs import pretty_state, pretty_worker, worker_summary_html

_FORMATS = ("text/plain", "text/html")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics and how a `Worker` displays; ``%load_ext jobmagic`` calls this."""
    magics = JobMagics(shell=ipython)
    ipython.register_magics(magics)
    kernel_restart.keep_jobs_on_restart(ipython, magics.service)
    if os.environ.get(SESSION_ENV):  # a notebook's kernel: take back what a restart left
        said = kernel_restart.reattached_message(magics.service().reattach())
        if said:
            sys.stdout.write(said + "\n")
    if ipython.display_formatter is not None:
        formatters = ipython.display_formatter.formatters
        formatters["text/plain"].for_type(Worker, pretty_worker)
        formatters["text/html"].for_type(Worker, worker_summary_html)
        # A state reads as the word people know ("running"), also inside a tuple or list.
        formatters["text/plain"].for_type(JobState, pretty_state)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Stop the kernel's non-detached jobs and remove the magics (``%unload_ext jobmagic``)."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(JobMagics.__name__, None)
    for kind in ("line", "cell"):
        manager.magics[kind].pop("job", None)
    if ipython.display_formatter is not None:
        for mime in _FORMATS:
            ipython.display_formatter.formatters[mime].pop(Worker, None)
        ipython.display_formatter.formatters["text/plain"].pop(JobState, None)
    kernel_restart.forget_restarts(ipython)
    if isinstance(magics, JobMagics):
        with contextlib.suppress(ValueError):
            # IPython annotates `configurables` as a list of shells; it holds Configurables.
            ipython.configurables.remove(magics)  # type: ignore[arg-type]
        magics.stop_owned_jobs()
