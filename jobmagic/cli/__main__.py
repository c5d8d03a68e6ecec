"""``python -m jobmagic.cli``: the same as the ``jobmagic`` command."""

from .main import run

run()
