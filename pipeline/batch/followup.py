"""Follow up a batch: ask the partner's status GET about customers left in a non-final
state (KYC pending, AML under investigation) and keep the answers for the reports.

The status calls themselves are :mod:`workers.followup`'s; this decides which rows to ask
about (the batch's and its reruns') and where each answer is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.batch.rerun import find_reruns
from pipeline.core.errors import UserError
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from workers.followup import FollowUp
    from workers.state import BatchStore


def follow_up(store: BatchStore, settings: Settings, redis_url: str, batch_id: str) -> FollowUp:
    """Ask about the open rows of ``batch_id`` and its reruns; keep every answer."""
    from workers.followup import FollowUp, check_statuses, open_rows
    from workers.runtime import Runtime

    if store.batch_state(batch_id) is None:
        raise UserError(f"batch {batch_id}: unknown (or expired) batch")
    batches = [batch_id, *find_reruns(store, batch_id)]
    pending = open_rows(store, batches)
    done = FollowUp()
    if pending:
        runtime = Runtime(settings, redis_url)
        try:
            done = runtime.run(check_statuses(
                runtime, batch_id, {n: s for n, (_, s) in pending.items()}
            ))
            grants = runtime.take_grants()
            if grants:
                store.count_calls(batch_id, "token", grants)
        finally:
            runtime.close()
    # Each answer goes to the followed batch (its report shows it) and to the rerun that
    # held the row's latest status, so the merged report (latest batch wins) shows it too.
    store.save_statuses(batch_id, done.rows)
    for holder in batches[1:]:
        store.save_statuses(holder, {
            n: s for n, s in done.rows.items() if pending[n][0] == holder
        })
    return done
