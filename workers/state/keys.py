"""Every Redis key name of the pipeline, and the constants that size the state.

Key names are built in one class so that nothing else spells them: a rename or a new scope
(the partner's, see ``Keys.customer_prefix``) changes one place, and a reader can list every
key the pipeline keeps by reading one class. Customer keys hold a digest of
(id_type, id_number), never the ID number itself, so key listings and ``MONITOR`` output
carry no personal data.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

DEFAULT_TTL_SECONDS = 14 * 24 * 3600
RECENT_BATCHES_KEPT = 1000
CALL_KINDS = ("lookup", "onboard", "status", "token")


def utc_now() -> str:
    """Current UTC time as ISO 8601, the form every timestamp in the store takes."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def customer_digest(id_type: str, id_number: str) -> str:
    """Stable, non-reversible key part for one customer (no ID number in key names)."""
    raw = f"{id_type.strip()}\x1f{id_number.strip()}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class Keys:
    """Names of every key the pipeline uses; nothing else builds key names."""

    def __init__(self, prefix: str = "onboard", partner_scope: str = "") -> None:
        self.prefix = prefix
        # Customer keys (ledger, claim, create-sent) describe a customer *at one partner*: a
        # ledger filled against the sandbox host must never answer for production, so they
        # live under the partner's scope (see ``PartnerSettings.scope_id``).
        self.customer_prefix = f"{prefix}:p:{partner_scope}" if partner_scope else prefix

    def meta(self, batch_id: str) -> str:
        """Hash of the batch's descriptive fields and cursor."""
        return f"{self.prefix}:batch:{batch_id}:meta"

    def rows(self, batch_id: str) -> str:
        """Hash row_number → compact JSON outcome record."""
        return f"{self.prefix}:batch:{batch_id}:rows"

    def counts(self, batch_id: str) -> str:
        """Hash outcome → rows recorded with it, plus ``done``."""
        return f"{self.prefix}:batch:{batch_id}:counts"

    def deliveries(self, batch_id: str) -> str:
        """Hash chunk id → times the chunk was delivered to a worker."""
        return f"{self.prefix}:batch:{batch_id}:deliveries"

    def calls(self, batch_id: str) -> str:
        """Hash call kind → partner calls made for the batch."""
        return f"{self.prefix}:batch:{batch_id}:calls"

    def all_calls(self) -> str:
        """Hash call kind → partner calls made by all batches."""
        return f"{self.prefix}:calls"

    def batches(self) -> str:
        """Sorted set of batch ids scored by creation time."""
        return f"{self.prefix}:batches"

    def ledger(self, id_type: str, id_number: str) -> str:
        """Where a customer that reached a done outcome is remembered across batches."""
        return f"{self.customer_prefix}:ledger:{customer_digest(id_type, id_number)}"

    def claim(self, id_type: str, id_number: str) -> str:
        """Create claim: held by the one worker allowed to create this customer now."""
        return f"{self.customer_prefix}:claim:{customer_digest(id_type, id_number)}"

    def create_sent(self, id_type: str, id_number: str) -> str:
        """Set before a create is sent; its presence makes a later lookup hit ``onboarded``."""
        return f"{self.customer_prefix}:sent:{customer_digest(id_type, id_number)}"

    def selection(self, batch_id: str) -> str:
        """Hash input row → batch row number of a rerun batch (only its selected rows)."""
        return f"{self.prefix}:batch:{batch_id}:select"

    def statuses(self, batch_id: str) -> str:
        """Hash row_number → customer status JSON of rows left in a non-final state."""
        return f"{self.prefix}:batch:{batch_id}:status"

    def ratelimit(self, name: str) -> str:
        """GCRA theoretical arrival time of the named global rate limit."""
        return f"{self.prefix}:ratelimit:{name}"

    def pause(self, name: str) -> str:
        """Absolute time (ms) until which every worker holds off the named limit."""
        return f"{self.prefix}:pause:{name}"

    def token(self, partner_scope: str) -> str:
        """Prefix of the shared access token of one partner (the broker adds ``:lock``)."""
        return f"{self.prefix}:token:{partner_scope}"
