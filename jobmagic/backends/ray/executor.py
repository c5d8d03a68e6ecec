"""The Ray backend: jobs submitted to a Ray cluster through its Jobs API.

A job becomes one Ray job whose entrypoint is ``cd CWD && exec SHELL -c COMMAND`` (each
part quoted), submitted as ``jobmagic-<job id>-<random>``. ``--gpus``, ``--cpus`` and
``--memory`` become Ray's ``entrypoint_num_gpus``, ``entrypoint_num_cpus`` and
``entrypoint_memory`` (Ray reserves them; it does not enforce them), the job's pools its
``entrypoint_resources``, its ``env`` Ray's ``runtime_env`` ``env_vars``. The cluster is
assumed to share the filesystem: the command runs in the same directory path. The record
keeps the cluster's address and the submission id, so any process can follow, stop or
finish the job later; Ray itself forgets its jobs when its head node goes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import secrets
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobmagic.core.limits import Usage
from jobmagic.core.outcome import Outcome
from jobmagic.core.spec import JobSpec
from jobmagic.errors import LaunchError

from .execution import RayExecution, complete_log, node_of, outcome_of, unknown_to
from .rest import NOT_FOUND, TERMINAL, JobsApi, RayRefused, RayUnreachable, resolve_address

#: What to do when Ray's client side is not installed.
RAY_MISSING = "the Ray backend needs Ray: pip install 'jobmagic[ray]'"


def ray_installed() -> bool:
    """True when ``jobmagic[ray]`` is installed (Ray, and aiohttp for log websockets).

    Looked up, not imported: importing Ray costs about a second.
    """
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("ray", "aiohttp"))
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


def _held(spec: JobSpec) -> str:
    """What holds a Ray job, for its record: what best effort gave up says so."""
    if spec.pids is None:
        return "ray"
    return "ray; best effort: pids dropped (Ray cannot limit processes)"


def entrypoint(spec: JobSpec) -> str:
    """The shell line Ray runs for ``spec`` (every part quoted).

    With ``ship_cwd`` it runs where Ray unpacked the uploaded directory.
    """
    run = f"exec {shlex.quote(spec.shell)} -c {shlex.quote(spec.command)}"
    return f"cd {shlex.quote(spec.cwd)} && {run}" if spec.cwd and not spec.ship_cwd else run


class RayExecutor:
    """Submits jobs to Ray clusters and finds them again; one per job home. Thread-safe."""

    name = "ray"
    #: Its jobs take Ray's resources, not this machine's GPU pool.
    pooled = False

    def __init__(self, home: Path) -> None:
        self._home = home
        # Guards _apis: jobs start from several threads.
        self._lock = threading.Lock()
        self._apis: dict[str, JobsApi] = {}

    def prepared(self, spec: JobSpec) -> JobSpec:
        """``spec`` with its cluster's address (RAY_ADDRESS, the default) and cwd explicit.

        The job runs in the directory it was started from, as a local job would: the
        cluster shares the filesystem, or ``ship_cwd`` uploads that directory.
        """
        return dataclasses.replace(
            spec, address=resolve_address(spec.address), cwd=spec.cwd or os.getcwd()
        )

    def check(self, spec: JobSpec) -> None:
        """Refuse what a Ray job cannot be: a terminal, a process limit, no Ray installed."""
        if not ray_installed():
            raise ValueError(RAY_MISSING)
        resolve_address(spec.address)
        if spec.pty:
            raise ValueError("a Ray job has no terminal: leave out --pty")
        if spec.pids is not None and not spec.best_effort:
            raise ValueError(
                "Ray cannot limit a job's processes: leave out --pids, or pass --best-effort"
            )

    def launch(self, job_id: int, spec: JobSpec, log_path: Path) -> RayExecution:
        """Submit job ``job_id``; its output is mirrored into ``log_path``."""
        api = self._api(spec.address)
        line = entrypoint(spec)
        payload: dict[str, Any] = {
            "entrypoint": line,
            "runtime_env": {"env_vars": dict(spec.env)} if spec.env else None,
            "metadata": {"jobmagic_job": str(job_id)},
            "entrypoint_num_gpus": spec.gpus or None,
            "entrypoint_num_cpus": spec.cpus,
            "entrypoint_memory": spec.memory,
            "entrypoint_resources": dict(spec.resources) or None,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        for attempt in range(2):
            submission_id = f"jobmagic-{job_id}-{secrets.token_hex(4)}"
            try:
                if spec.ship_cwd:
                    _submit_shipping(api, {**payload, "submission_id": submission_id}, spec)
                else:
                    api.submit({**payload, "submission_id": submission_id})
            except RayUnreachable as exc:
                raise LaunchError(str(exc)) from None
            except RayRefused as exc:
                if attempt == 0 and "already exists" in str(exc):
                    continue  # another job took this id: draw another
                raise LaunchError(f"the Ray cluster at {api.address} refused it: {exc}") from None
            return RayExecution(api, submission_id, line, log_path, containment=_held(spec))
        raise LaunchError(f"the Ray cluster at {api.address} refused two fresh submission ids")

    def attach(self, ref: Mapping[str, Any] | None) -> RayExecution | None:
        """Follow the job ``ref`` names again; None once it has ended (``probe`` tells how)."""
        parsed = self._parsed(ref)
        if parsed is None:
            return None
        api, submission_id = parsed
        assert ref is not None
        try:
            info = api.info(submission_id)
        except RayRefused:
            return None
        except RayUnreachable:
            info = {}  # followed anyway: the follower says it lost contact, and tries again
        if info.get("status") in TERMINAL:
            return None
        return RayExecution(
            api,
            submission_id,
            str(ref.get("entrypoint", "")),
            _path(ref.get("log")),
            started=info.get("status") != "PENDING",
            node=node_of(info) or ref.get("node"),
        )

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """How job ``ref`` ended (its log completed from Ray's), None while it runs.

        None too while its cluster cannot be reached: nobody can tell then.
        """
        parsed = self._parsed(ref)
        if parsed is None:
            return Outcome(None, reason="its Ray submission id was never recorded")
        api, submission_id = parsed
        assert ref is not None
        try:
            info = api.info(submission_id)
        except RayRefused as exc:
            return unknown_to(api, submission_id) if exc.status == NOT_FOUND else None
        except RayUnreachable:
            return None
        if info.get("status") not in TERMINAL:
            return None
        note = complete_log(api, dict(ref)) if ref.get("entrypoint") is not None else None
        return outcome_of(info, _path(ref.get("log")), note)

    def usage(self, ref: Mapping[str, Any] | None) -> Usage | None:  # noqa: ARG002 - the protocol's
        """Not known: Ray's Jobs API does not say what a job uses."""
        return None

    def discard(self, job_id: int, ref: Mapping[str, Any] | None) -> None:
        """Nothing to delete here: Ray keeps its own record of the job until its head goes."""

    def _api(self, address: str | None) -> JobsApi:
        resolved = resolve_address(address)
        with self._lock:
            api = self._apis.get(resolved)
            if api is None:
                api = self._apis[resolved] = JobsApi(resolved)
            return api

    def _parsed(self, ref: Mapping[str, Any] | None) -> tuple[JobsApi, str] | None:
        """The cluster and submission id ``ref`` names; None when it names none."""
        if not ref or not isinstance(ref.get("submission_id"), str):
            return None
        try:
            return self._api(str(ref.get("address"))), ref["submission_id"]
        except ValueError:
            return None


def _path(log: object) -> Path | None:
    return Path(log) if isinstance(log, str) and log else None


def _submit_shipping(api: JobsApi, payload: dict[str, Any], spec: JobSpec) -> None:
    """Submit with the working directory uploaded: Ray's own client packs and sends it."""
    api.version()  # an unreachable cluster fails here, within the call timeout
    from ray.job_submission import JobSubmissionClient

    runtime_env = {**payload.pop("runtime_env", {}), "working_dir": spec.cwd}
    try:
        JobSubmissionClient(api.address).submit_job(**payload, runtime_env=runtime_env)
    except Exception as exc:  # noqa: BLE001 - Ray's client raises RuntimeError, ValueError, ...
        message = str(exc).strip().splitlines()
        raise RayRefused(
            f"could not ship {spec.cwd}: {message[-1] if message else type(exc).__name__}", 400
        ) from None
