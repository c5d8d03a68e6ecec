"""The REST API's URL patterns: every handler of ``handlers.py`` and ``action_handlers.py``."""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from .action_handlers import PauseHandler, RestartHandler
from .handlers import JobHandler, JobListHandler, JobmagicHandler, LogHandler, StopHandler


def api_handlers(base_url: str) -> list[tuple[str, type[JobmagicHandler]]]:
    """Return the URL patterns of the API under ``base_url``."""
    api = url_path_join(base_url, "jobmagic", "api", "jobs")
    return [
        (api, JobListHandler),
        (api + r"/([^/]+)", JobHandler),
        (api + r"/([^/]+)/stop", StopHandler),
        (api + r"/([^/]+)/(pause|resume)", PauseHandler),
        (api + r"/([^/]+)/restart", RestartHandler),
        (api + r"/([^/]+)/log", LogHandler),
    ]
