"""Handlers fed the output of every job of one service (``WorkerService.add_handler``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol

#: A handler and how much of the output's end it shows (None: all of it).
Handlers = Mapping[logging.Handler, int | None]


class Follower(Protocol):
    """A running job's output feed (``OutputFeed``), told when the handlers change."""

    def listeners_changed(self) -> None:
        """The handlers changed: feed the new set."""
        ...


class SharedHandlers:
    """Handlers fed the output of every job of one service (``WorkerService.add_handler``).

    They sit on the service's logger, which every job logger propagates to; the feeds of
    running jobs follow this set, so that adding a handler starts feeding it at once.

    Parameters
    ----------
    logger:
        The service's logger.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        # Guards _handlers and _feeds: handlers come and go from any thread.
        self._lock = threading.Lock()
        self._handlers: dict[logging.Handler, int | None] = {}
        self._feeds: set[Follower] = set()

    def add(self, handler: logging.Handler, tail_bytes: int | None) -> None:
        """Feed ``handler`` every job's output (``tail_bytes`` as in ``add_handler``)."""
        with self._lock:
            self._handlers[handler] = tail_bytes
            feeds = list(self._feeds)
        self._logger.addHandler(handler)
        for feed in feeds:
            feed.listeners_changed()

    def remove(self, handler: logging.Handler) -> None:
        """Stop feeding ``handler``."""
        with self._lock:
            self._handlers.pop(handler, None)
            feeds = list(self._feeds)
        self._logger.removeHandler(handler)
        for feed in feeds:
            feed.listeners_changed()

    def handlers(self) -> Handlers:
        """The handlers now, each with its ``tail_bytes``."""
        with self._lock:
            return dict(self._handlers)

    def follow(self, feed: Follower) -> None:
        """``feed``'s job runs: tell it when the handlers change."""
        with self._lock:
            self._feeds.add(feed)

    def unfollow(self, feed: Follower) -> None:
        """``feed``'s job has ended."""
        with self._lock:
            self._feeds.discard(feed)
