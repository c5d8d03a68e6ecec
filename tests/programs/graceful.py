"""On SIGTERM takes half a second to shut down, prints "bye" and exits 0.

Prints "ready <pid>" once its handler is installed.
"""

import os
import signal
import sys
import time


def on_term(_signum: int, _frame: object) -> None:
    time.sleep(0.5)  # a program cleaning up; the job must not be killed meanwhile
    sys.stdout.write("bye\n")
    sys.stdout.flush()
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
sys.stdout.write(f"ready {os.getpid()}\n")
sys.stdout.flush()
while True:
    signal.pause()
