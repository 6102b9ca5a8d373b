"""The one place that knows how kombu's Redis transport lays out a Celery queue.

kombu keeps these structures as an implementation detail; reading them directly (to tell
whether a queue is idle, or to ride a counter on a publish) breaks silently when kombu
changes them, so all such knowledge sits here, small and easy to check against a new kombu.
"""

from __future__ import annotations

# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>"
# and every delivered-but-unacknowledged message (of all queues) in one hash.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"
