"""Write SIZE random bytes to stdout; write their sha256 (hex) to HASH_FILE at the end.

Usage: write_random.py SIZE HASH_FILE [GO_FIFO]
With GO_FIFO, wait for a line on that FIFO before writing (the test's "go").
"""

import hashlib
import os
import sys

size = int(sys.argv[1])
hash_file = sys.argv[2]
if len(sys.argv) > 3:
    with open(sys.argv[3], "rb") as fifo:
        fifo.readline()
digest = hashlib.sha256()
out = sys.stdout.buffer
with open("/dev/urandom", "rb") as source:
    while size > 0:
        chunk = source.read(min(size, 1 << 20))
        digest.update(chunk)
        out.write(chunk)
        size -= len(chunk)
out.flush()
with open(hash_file + ".tmp", "w") as f:
    f.write(digest.hexdigest())
os.rename(hash_file + ".tmp", hash_file)
