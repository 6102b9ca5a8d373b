"""Which rows repeat an ID already seen earlier in the same file, in bounded memory.

Each (id_type, id_number) key is kept as a 64-bit hash plus the row number where it first
appeared: 16 bytes a key, about 16 MB for a million distinct IDs, instead of several hundred
bytes for a Python dict of strings. Keys live in a few sorted numpy runs, merged now and then,
so a lookup is a binary search. Python's string hash is a keyed 64-bit SipHash, stable within
one process; a false match between two different IDs has a chance of about n^2 / 2^65
(3e-8 for a million rows).
"""

from __future__ import annotations

import numpy as np

_MAX_RUNS = 4


class DuplicateTracker:
    """Remembers the first row of every key across the chunks of one file."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def first_rows(self, keys: list[str], rows: np.ndarray) -> np.ndarray:
        """For each key, the row number where it first appeared if that was an earlier row,
        else 0; then remember the keys first seen here. ``rows`` must increase."""
        n = len(keys)
        hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=n)
        rows = np.asarray(rows, dtype=np.int64)
        earlier = np.zeros(n, dtype=np.int64)
        for run_keys, run_rows in self._runs:
            pos = np.searchsorted(run_keys, hashes).clip(max=len(run_keys) - 1)
            hit = (run_keys[pos] == hashes) & (earlier == 0)
            earlier[hit] = run_rows[pos[hit]]
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        starts = np.ones(n, dtype=bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        # With a stable sort the first element of each group is its first row in this chunk.
        group_first = order[starts][np.cumsum(starts) - 1]
        within = np.where(starts, 0, rows[group_first])
        in_chunk = np.empty(n, dtype=np.int64)
        in_chunk[order] = within
        result = np.where(earlier != 0, earlier, in_chunk)
        new = starts & (earlier[order] == 0)
        if new.any():
            self._runs.append((ordered[new], rows[order][new]))
        if len(self._runs) > _MAX_RUNS:
            merged_keys = np.concatenate([k for k, _ in self._runs])
            merged_rows = np.concatenate([r for _, r in self._runs])
            merge_order = np.argsort(merged_keys, kind="stable")
            self._runs = [(merged_keys[merge_order], merged_rows[merge_order])]
        return result
