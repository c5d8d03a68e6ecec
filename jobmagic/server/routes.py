"""The REST API's URL patterns: the handlers of ``*handler*.py`` and ``log_download.py``."""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from .action_handlers import PauseHandler, RemoveHandler, RestartHandler
from .handlers import JobListHandler, JobmagicHandler, LogHandler, StopHandler
from .job_list import JobListBodies
from .log_download import LogDownloadHandler
from .usage_handler import UsageHandler, UsageReadings

#: A URL pattern, its handler, and (for some) the handler's ``initialize`` arguments.
Route = tuple[str, type[JobmagicHandler]] | tuple[str, type[JobmagicHandler], dict[str, Any]]


def api_handlers(base_url: str) -> list[Route]:
    """Return the URL patterns of the API under ``base_url`` (called once per server)."""
    api = url_path_join(base_url, "jobmagic", "api", "jobs")
    return [
        (api, JobListHandler, {"bodies": JobListBodies()}),
        (api + r"/([^/]+)", RemoveHandler),  # and GET, as JobHandler
        (api + r"/([^/]+)/stop", StopHandler),
        (api + r"/([^/]+)/(pause|resume)", PauseHandler),
        (api + r"/([^/]+)/restart", RestartHandler),
        (api + r"/([^/]+)/log", LogHandler),
        (api + r"/([^/]+)/log/download", LogDownloadHandler),
        (api + r"/([^/]+)/usage", UsageHandler, {"readings": UsageReadings()}),
    ]
