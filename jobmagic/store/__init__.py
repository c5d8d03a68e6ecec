"""Where jobs are recorded: the private job home and its SQLite store, shared by processes."""
