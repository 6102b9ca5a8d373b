"""Everything kept in Redis: keys, records, scripts and the stores over them.
"""

from workers.state.store import (
    RECENT_BATCHES_KEPT,
    UNACKED_KEY,
    AsyncBatchStore,
    BatchMeta,
    BatchState,
    BatchStore,
    Keys,
    LedgerEntry,
    RowRecord,
    ScriptBatcher,
)

__all__ = [
    "RECENT_BATCHES_KEPT", "UNACKED_KEY", "AsyncBatchStore", "BatchMeta", "BatchState",
    "BatchStore", "Keys", "LedgerEntry", "RowRecord", "ScriptBatcher",
]
