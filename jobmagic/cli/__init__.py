"""The ``jobmagic`` command line (``main.py``): list, follow, stop and wait on jobs."""
