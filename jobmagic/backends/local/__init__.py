"""The local backend: jobs as process groups on this machine, started by a spawner process."""
