"""What a job is, independent of where it runs: its spec, its states, its events."""
