"""The jobmagic Jupyter server extension: a REST API over the job store, and its events.

It serves ``{base_url}jobmagic/api/`` (see ``handlers``) for JupyterLab's sidebar and log
view, and emits every change of a job on jupyter_server's event bus (``job_events``). It
reads the store every kernel writes, on a thread of its own (never on the event loop),
wakes on inotify and pidfd events instead of polling, and imports neither IPython nor
ipywidgets.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import TYPE_CHECKING, Any

from jobmagic.store.job_store import JobStore

from .extension import JobmagicServer

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

__all__ = ["JobmagicServer"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "jobmagic.server"}]


def _load_jupyter_server_extension(serverapp: ServerApp) -> None:
    """Open the job store, register the events' schema, add the API handlers."""
    from .event_schema import SCHEMA_PATH
    from .routes import api_handlers

    event_logger = serverapp.event_logger
    if event_logger is not None:  # (jupyter_server makes one as it starts)
        event_logger.register_event_schema(SCHEMA_PATH)
    jobmagic = JobmagicServer(
        store=JobStore(), event_logger=event_logger, parent=serverapp, log=serverapp.log
    )
    web_app = serverapp.web_app
    web_app.settings["jobmagic"] = jobmagic
    web_app.add_handlers(".*$", api_handlers(web_app.settings["base_url"]))  # type: ignore[no-untyped-call]
    # Module-based extensions get no shutdown hook from jupyter_server; at exit, close()
    # still gives SIGKILL to jobs that a UI stop is waiting on.
    atexit.register(jobmagic.close)
    serverapp.log.info("jobmagic: serving the job API for the store in %s", jobmagic.store.home)


async def _start_jupyter_server_extension(serverapp: ServerApp) -> None:
    """Attach the watchers to the running event loop (before any request arrives)."""
    jobmagic: JobmagicServer = serverapp.web_app.settings["jobmagic"]
    jobmagic.attach(asyncio.get_running_loop())
