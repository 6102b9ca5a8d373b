"""Counters of the sandbox: sliding window, concurrency peak, duplicate creates."""

from __future__ import annotations

from sandbox.stats import SlidingWindow, Stats


def test_sliding_window_counts_only_the_last_second() -> None:
    """Events older than the span leave the window; room opens when the oldest leaves."""
    window = SlidingWindow(1.0)
    assert [window.add(t) for t in (0.0, 0.2, 0.9)] == [1, 2, 3]
    assert window.count(1.0) == 2
    assert window.seconds_until_room(1.0) == 0.2 + 1.0 - 1.0
    assert window.add(2.5) == 1


def test_peaks_follow_in_flight_and_business_starts() -> None:
    """peak_concurrency is the most requests in flight at once; peak_rps counts only
    business requests started within one second."""
    stats = Stats()
    for t in (0.0, 0.1, 0.2):
        stats.started(True, t)
    stats.started(False, 0.3)
    stats.finished("lookup", 200)
    stats.started(True, 1.15)
    snapshot = stats.snapshot(customers=0)
    assert snapshot["peak_concurrency"] == 4
    assert snapshot["in_flight"] == 4
    assert snapshot["peak_rps"] == 3
    assert snapshot["requests_total"] == 5
    assert snapshot["calls"]["lookup"] == {"200": 1}


def test_duplicate_creates_counts_ids_and_repeat_creates_counts_extras() -> None:
    """An ID created three times counts once in duplicate_creates and twice in repeat_creates."""
    stats = Stats()
    for times in (1, 2, 3, 1):
        stats.created(times)
    snapshot = stats.snapshot(customers=4)
    assert (snapshot["creates"], snapshot["duplicate_creates"], snapshot["repeat_creates"]) == (
        4,
        1,
        2,
    )


def test_reset_zeroes_counters_but_keeps_requests_in_flight() -> None:
    """After reset counters are zero, in-flight requests are still in flight, and the peak
    starts from them."""
    stats = Stats()
    stats.started(True, 0.0)
    stats.grants["password"] += 1
    stats.reset()
    snapshot = stats.snapshot(customers=1)
    assert snapshot["grants"] == {"password": 0, "refresh": 0}
    assert (snapshot["in_flight"], snapshot["peak_concurrency"], snapshot["peak_rps"]) == (1, 1, 0)
    stats.finished("lookup", 200)
    assert stats.snapshot(customers=1)["in_flight"] == 0
