"""The kernel's job engine: ``WorkerService``, ``Worker`` and what runs beneath them.

Nothing is imported here: ``import jobmagic.engine.<module>`` loads only that module.
"""
