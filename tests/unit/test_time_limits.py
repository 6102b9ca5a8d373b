"""The default chunk time limits cover the slowest possible row, and stay clear of Redis's
redelivery of unacknowledged messages."""

from __future__ import annotations

from pipeline.core.settings import Settings
from workers.app import check_timing


def test_default_soft_limit_outlasts_a_row_whose_every_call_times_out() -> None:
    """Every attempt: a lookup and a create each hitting every partner timeout, the claim
    hold after a create with no answer, and the longest backoff; the chunk must not be cut
    off before such a row has used all its attempts."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    partner, p = settings.partner, settings.pipeline
    one_call = (partner.connect_timeout + partner.write_timeout + partner.read_timeout
                + partner.pool_timeout)
    worst_row = p.max_attempts * (2 * one_call + p.claim_ttl_seconds + p.backoff_max_seconds)
    assert worst_row < p.task_soft_time_limit_seconds < p.task_time_limit_seconds
    assert p.task_time_limit_seconds < p.visibility_timeout_seconds / 2
    check_timing(settings)
