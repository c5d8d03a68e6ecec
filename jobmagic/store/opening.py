"""Opening a job store's SQLite file: its safety checks, its identity, its migrations.

Processes opening one store at the same moment take turns (a blocking ``flock`` on
``store.lock``): switching a new file to WAL and migrating it are not safe to race.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from jobmagic.core.files import UnsafePath, check_private_file, create_private_file, file_size
from jobmagic.errors import StoreError

from .records import MIGRATIONS, SCHEMA_VERSION

#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT = 60.0
#: Marks the file as jobmagic's ("JOBM"), so a foreign SQLite file is never written to.
APPLICATION_ID = 0x4A4F424D
DB_NAME = "jobs.sqlite"
#: Opened for writing and closed after every commit (IN_CLOSE_WRITE for inotify
#: watchers; nothing is written to it). A commit's last write to the WAL comes before
#: SQLite publishes it in the shared-memory index, so a watcher woken by that write may
#: not see the commit yet; this file signals only once it is visible.
CHANGED_NAME = "jobs.changed"


class OpenedStore(NamedTuple):
    """A store's connection, its generation (names its jobs' files), its file's identity."""

    db: sqlite3.Connection
    generation: str
    identity: tuple[int, int]


def open_database(home: Path, path: Path, changed_path: Path) -> OpenedStore:
    """Open (creating and migrating if needed) the store file ``path`` in ``home``.

    Raises
    ------
    StoreError
        The file or its journals are links or another user's, it is damaged, foreign or
        newer than this jobmagic; the message names the file and what to do.
    """
    try:
        lock_fd = create_private_file(home / "store.lock")
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            return _open_locked(home, path, changed_path)
        finally:
            os.close(lock_fd)
    except OSError as exc:
        if isinstance(exc, UnsafePath):
            raise StoreError(f"cannot use the job store: {exc}") from None
        raise StoreError(f"cannot open the job store in {home}: {exc}") from None


def _open_locked(home: Path, path: Path, changed_path: Path) -> OpenedStore:
    # Created here, never through a link, so that they are 0600 and ours from the start
    # (SQLite gives its -wal and -shm files the database's mode); the journals SQLite
    # opens itself are checked first.
    os.close(create_private_file(path))
    os.close(create_private_file(changed_path))
    wal = path.with_name(DB_NAME + "-wal")
    for journal in (wal, path.with_name(DB_NAME + "-shm")):
        check_private_file(journal)
    if file_size(path) == 0 and file_size(wal) > 0:
        # Not a new store: its file was truncated under a log of changes to it.
        # (SQLite would take it for an empty database and wait for a lock.)
        raise damaged(home, path, sqlite3.DatabaseError("the file was truncated to 0 bytes"))
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        _check_and_migrate(db)
        generation = db.execute("SELECT value FROM store_info WHERE key = 'generation'").fetchone()[
            0
        ]
    except sqlite3.DatabaseError as exc:
        db.close()
        raise damaged(home, path, exc) from exc
    info = os.stat(path)
    return OpenedStore(db, generation, (info.st_dev, info.st_ino))


def damaged(home: Path, path: Path, exc: Exception) -> StoreError:
    """The error for a store file that cannot be used, saying how to start afresh."""
    return StoreError(
        f"the job store {path} cannot be used ({exc}). Move it aside with its "
        f"journals ({move_aside_command(home)}) and jobmagic will start a new "
        "one; the old records stay in the moved files."
    )


def move_aside_command(home: Path) -> str:
    """A shell command that moves a store's files into a new ``old-<time>/`` of ``home``.

    All of them: a database moved without its ``-wal`` would lose the latest changes,
    and a ``-wal`` left behind would be replayed into the next store.
    """
    return f"cd {shlex.quote(str(home))} && d=old-$(date +%s) && mkdir $d && mv {DB_NAME}* $d/"


def _check_and_migrate(db: sqlite3.Connection) -> None:
    # Look before writing anything: switching a foreign file to WAL would change it.
    _check_identity(db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process may have migrated meanwhile.
        version = _check_identity(db)
        for number in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
        if version == 0:
            # A new store: its files get names no earlier store's files have.
            db.execute(
                "UPDATE store_info SET value = ? WHERE key = 'generation'", (secrets.token_hex(4),)
            )
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script``, one by one (a trigger's body holds semicolons)."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement
            statement = ""
    if statement.strip(" \n;"):
        raise ValueError(f"an incomplete SQL statement in a migration: {statement!r}")


def _check_identity(db: sqlite3.Connection) -> int:
    """Refuse foreign or newer files; return the file's schema version."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise sqlite3.DatabaseError("it is not a jobmagic job store")
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"it was written by a newer jobmagic (schema {version} > {SCHEMA_VERSION})"
        )
    return version


def rollback(db: sqlite3.Connection) -> None:
    """End a failed transaction, unless SQLite already rolled it back itself."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
