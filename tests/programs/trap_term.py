"""Ignores SIGTERM (prints "got TERM" each time) until killed; prints "ready <pid>" first."""

import os
import signal
import sys


def on_term(_signum: int, _frame: object) -> None:
    sys.stdout.write("got TERM\n")
    sys.stdout.flush()


signal.signal(signal.SIGTERM, on_term)
sys.stdout.write(f"ready {os.getpid()}\n")
sys.stdout.flush()
while True:
    signal.pause()
