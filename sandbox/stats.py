"""Counters the admin endpoint reports; every update is O(1) so 1M-row runs stay cheap."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

ENDPOINTS = ("token", "lookup", "onboard", "status")


class SlidingWindow:
    """Events started within the last ``span`` seconds (amortised O(1) per event)."""

    def __init__(self, span: float = 1.0) -> None:
        self.span = span
        self._starts: deque[float] = deque()

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        starts = self._starts
        horizon = now - self.span
        while starts and starts[0] <= horizon:
            starts.popleft()
        return len(starts)

    def add(self, now: float) -> int:
        """Record one event at ``now``; return the window's count including it."""
        count = self.count(now) + 1
        self._starts.append(now)
        return count

    def seconds_until_room(self, now: float) -> float:
        """How long until the oldest event in the window leaves it."""
        if not self._starts:
            return 0.0
        return max(0.0, self._starts[0] + self.span - now)

    def clear(self) -> None:
        """Forget every event."""
        self._starts.clear()


class Stats:
    """Counters of one sandbox run; ``reset`` starts them again."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._starts = SlidingWindow()
        self.reset()

    def reset(self) -> None:
        """Zero every counter (requests still in flight stay counted as in flight)."""
        self.requests_total = 0
        self.grants: Counter[str] = Counter({"password": 0, "refresh": 0})
        self.token_errors: Counter[str] = Counter({"invalid_grant": 0, "invalid_client": 0})
        self.calls: dict[str, Counter[int]] = {name: Counter() for name in ENDPOINTS}
        self.faults: Counter[str] = Counter()
        self.creates = 0
        self.duplicate_creates = 0
        self.repeat_creates = 0
        self.updates = 0
        self.rate_limited = 0
        self.peak_concurrency = self.in_flight
        self.peak_rps = 0
        self._starts.clear()

    def started(self, business: bool, now: float) -> None:
        """A request began (token or business call)."""
        self.requests_total += 1
        self.in_flight += 1
        if self.in_flight > self.peak_concurrency:
            self.peak_concurrency = self.in_flight
        if business:
            in_window = self._starts.add(now)
            if in_window > self.peak_rps:
                self.peak_rps = in_window

    def finished(self, endpoint: str, status: int) -> None:
        """A request ended with an HTTP status."""
        self.in_flight -= 1
        self.calls[endpoint][status] += 1

    def created(self, times_for_this_id: int) -> None:
        """A customer was created; ``times_for_this_id`` counts creates of its ID so far."""
        self.creates += 1
        if times_for_this_id > 1:
            self.repeat_creates += 1
            if times_for_this_id == 2:
                self.duplicate_creates += 1

    def snapshot(self, customers: int) -> dict[str, Any]:
        """The JSON document of ``GET /_sandbox/stats``."""
        return {
            "requests_total": self.requests_total,
            "grants": dict(self.grants),
            "token_errors": dict(self.token_errors),
            "calls": {
                name: {str(status): n for status, n in sorted(counts.items())}
                for name, counts in self.calls.items()
            },
            "creates": self.creates,
            "duplicate_creates": self.duplicate_creates,
            "repeat_creates": self.repeat_creates,
            "updates": self.updates,
            "customers": customers,
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "peak_rps": self.peak_rps,
        }
