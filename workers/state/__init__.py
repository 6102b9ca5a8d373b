"""Everything kept in Redis: keys, records, scripts and the stores over them.

What lives here:

- batch meta (a hash), the list of recent batches and the enqueue cursor (resume support);
- one outcome record per row (a hash per batch), written "first final outcome wins": a
  redelivered task can never give a row a second outcome, and the per-outcome counters move
  only when a record is new (one Lua script, so the two can never disagree);
- the ledger of customers that reached ``onboarded``/``already_exists``, shared by all
  batches, so a rerun costs no partner call for them;
- the create claim (``claim_create``, one script, with a TTL: two workers never create the
  same customer at once, and a dead worker's claim expires) and the "create sent" marker (in
  doubt: a later lookup that finds the customer means our create landed);
- per-chunk delivery counters (poison detection) and partner-call counters by kind.

Customer keys hold a digest of (id_type, id_number), never the ID number itself, so key
listings and ``MONITOR`` output carry no personal data.

``BatchStore`` is the synchronous store (submit, status, report, task preamble);
``AsyncBatchStore`` offers the hot-path subset for the per-customer flow on an event loop.
Its per-row scripts (``claim_create``, ``hold_claim``, ``finish_row``) are coalesced:
calls made by concurrent rows while a round trip is under way go to Redis together as one
pipeline, so under load a row costs a fraction of a round trip's client CPU
(bench/throughput.py).

Import the public names from this package (``from workers.state import BatchStore``); the
modules under it are named after what they hold.
"""

from workers.state.batch_store import BatchStore
from workers.state.batcher import ScriptBatcher
from workers.state.broker import UNACKED_KEY
from workers.state.keys import (
    CALL_KINDS,
    DEFAULT_TTL_SECONDS,
    RECENT_BATCHES_KEPT,
    Keys,
    customer_digest,
    utc_now,
)
from workers.state.records import BatchMeta, BatchState, LedgerEntry, RowRecord
from workers.state.row_store import AsyncBatchStore

__all__ = [
    "CALL_KINDS",
    "DEFAULT_TTL_SECONDS",
    "RECENT_BATCHES_KEPT",
    "UNACKED_KEY",
    "AsyncBatchStore",
    "BatchMeta",
    "BatchState",
    "BatchStore",
    "Keys",
    "LedgerEntry",
    "RowRecord",
    "ScriptBatcher",
    "customer_digest",
    "utc_now",
]
