"""Start COUNT jobs ("true") through WorkerService in $JOBMAGIC_HOME, all at a signal.

Usage: start_many.py COUNT
Prints "ready" once the service is open, waits for a line on stdin ("go"), starts the jobs
as fast as it can, waits for them, and prints a JSON list of their ids.
"""

import json
import sys

from jobmagic import WorkerService

count = int(sys.argv[1])
service = WorkerService()
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.readline()
workers = [service.start("true") for _ in range(count)]
codes = [w.wait() for w in workers]
service.shutdown()
sys.stdout.write(json.dumps({"ids": [w.id for w in workers], "codes": codes}) + "\n")
