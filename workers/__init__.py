"""Celery app and tasks, the partner client, the shared token broker and Redis state."""
