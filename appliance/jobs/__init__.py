"""Persisted background jobs: a queue on the ``jobs`` table and a runner with worker threads."""
