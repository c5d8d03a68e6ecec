"""Ray's Jobs REST API, as the Ray backend calls it: plain HTTP with timeouts.

The documented endpoints of a Ray cluster's dashboard (``POST /api/jobs/``,
``GET /api/jobs/{id}``, ``GET .../logs``, ``POST .../stop``, ``GET /api/version``) are
called with the standard library, so a kernel or the Jupyter server that runs Ray jobs
never imports Ray itself (``import ray`` costs about a second and a hundred MB), and
every call has a deadline: Ray's own ``JobSubmissionClient`` waits on a host that does
not answer for as long as the system lets a connection hang.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from jobmagic.errors import JobmagicError

#: The Jobs API address used when none is given and ``RAY_ADDRESS`` is not set.
DEFAULT_ADDRESS = "http://127.0.0.1:8265"

#: Seconds a call waits for the cluster to answer before it says it cannot reach it.
CALL_TIMEOUT = 8.0

#: Ray's terminal job states.
TERMINAL = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})

#: The status of a call about a job the cluster does not know.
NOT_FOUND = 404


class RayUnreachable(JobmagicError):
    """Raised when the Ray cluster's Jobs API does not answer (refused, timed out)."""


class RayRefused(JobmagicError):
    """Raised when the Ray cluster answers a call with an error (its message says why)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resolve_address(address: str | None) -> str:
    """The Jobs API base URL of ``address``; None: ``RAY_ADDRESS``, else the default.

    ``host:port`` gets ``http://``; a trailing slash goes.

    Raises
    ------
    ValueError
        For a ``ray://`` client address or one that is not http(s)://HOST[:PORT].
    """
    chosen = address if address is not None else os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    text = chosen.strip().rstrip("/")
    if text.startswith("ray://"):
        raise ValueError(
            f"{chosen!r} is a Ray client address; jobmagic talks to the cluster's Jobs API: "
            "give the dashboard's address, e.g. http://HOST:8265"
        )
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(
            f"a Ray address is the dashboard's http(s)://HOST:PORT (e.g. {DEFAULT_ADDRESS}), "
            f"not {chosen!r}"
        )
    return text


class JobsApi:
    """The Jobs API of the Ray cluster at ``address`` (a URL from ``resolve_address``)."""

    def __init__(self, address: str, timeout: float = CALL_TIMEOUT) -> None:
        self.address = address
        self._timeout = timeout

    def version(self) -> str:
        """The cluster's Ray version (a reachability check)."""
        return str(self._call("GET", "/api/version")["ray_version"])

    def submit(self, payload: dict[str, Any]) -> str:
        """Submit a job (``entrypoint``, ``submission_id``, ...); its submission id."""
        return str(self._call("POST", "/api/jobs/", payload)["submission_id"])

    def info(self, submission_id: str) -> dict[str, Any]:
        """The job's details: ``status``, ``message``, ``driver_exit_code``, times (ms)."""
        info: dict[str, Any] = self._call("GET", f"/api/jobs/{_quoted(submission_id)}")
        return info

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM to its tree, SIGKILL after Ray's grace).

        True when it was running.
        """
        return bool(self._call("POST", f"/api/jobs/{_quoted(submission_id)}/stop")["stopped"])

    def logs(self, submission_id: str) -> str:
        """The job's whole log as Ray keeps it (Ray caps it at 16 MiB)."""
        return str(self._call("GET", f"/api/jobs/{_quoted(submission_id)}/logs")["logs"])

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is http(s), checked above
            self.address + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace").strip()
            raise RayRefused(_error_message(body) or f"HTTP {exc.code}", exc.code) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RayUnreachable(
                f"cannot reach the Ray cluster at {self.address}: {reason}"
            ) from None
        except ValueError as exc:  # not JSON: something else listens there
            raise RayUnreachable(
                f"{self.address} does not answer as a Ray cluster's Jobs API ({exc})"
            ) from None


def _quoted(submission_id: str) -> str:
    return urllib.parse.quote(submission_id, safe="")


def _error_message(text: str) -> str:
    """The message of an error body, one line.

    Ray answers a refused call with the server's traceback: the message is on its last
    ``SomeError: message`` line (the head wraps the agent's traceback in its own).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip().strip(".")]
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1).rstrip(".")
    return lines[-1] if lines else ""


_EXCEPTION_LINE = re.compile(r"(?:\w+\.)*\w*(?:Error|Exception): (?!Traceback)(.+)")
