"""The local backend: jobs as process groups on this machine, under a small shell wrapper."""
