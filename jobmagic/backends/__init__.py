"""What runs jobs: the ``Executor`` / ``Execution`` seam (``base``) and its backends."""
