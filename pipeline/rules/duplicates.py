"""Which rows repeat an ID already seen earlier in the same file, in bounded memory.

Keys are kept per ID type as 64-bit integers plus the row number where each first appeared:
16 bytes a key, about 16 MB for a million distinct IDs, instead of several hundred bytes for
a Python dict of strings. An ID number of up to 18 digits without a leading zero (every
Emirates ID) *is* its own integer key, so it is compared exactly. Any other number is keyed
by Python's string hash (a keyed 64-bit SipHash, stable within one process) in a separate key
space; a false match between two such IDs has a chance of about n^2 / 2^65 (3e-8 for a
million rows). Keys live in a few sorted numpy runs, merged now and then, so a lookup is a
binary search.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.rules import columns

_MAX_RUNS = 4
_EXACT = r"[1-9][0-9]{0,17}"


class DuplicateTracker:
    """Remembers the first row of every (ID type, ID number) across the chunks of one file."""

    def __init__(self) -> None:
        self._spaces: dict[Hashable, list[tuple[np.ndarray, np.ndarray]]] = {}

    def first_rows_of_ids(
        self, id_types: pd.Series, id_numbers: pd.Series, rows: np.ndarray
    ) -> np.ndarray:
        """For each (type, number) the earlier row it first appeared on, else 0; remembers
        the new ones. ``rows`` (the rows' numbers) must increase."""
        result = np.zeros(len(rows), dtype=np.int64)
        kinds = id_types.unique().tolist()
        for kind in kinds:
            of_kind = (
                np.arange(len(rows))
                if len(kinds) == 1
                else np.flatnonzero((id_types == kind).to_numpy())
            )
            numbers = id_numbers if len(of_kind) == len(rows) else id_numbers.iloc[of_kind]
            exact = numbers.str.fullmatch(_EXACT).to_numpy(dtype=bool, na_value=False)
            where = np.flatnonzero(exact)
            if len(where):
                subset = numbers if len(where) == len(numbers) else numbers.iloc[where]
                keys = np.asarray(pc.cast(columns.chunks(subset), pa.int64()).to_numpy())
                result[of_kind[where]] = self.first_rows((kind, "n"), keys, rows[of_kind[where]])
            other = np.flatnonzero(~exact)
            if len(other):
                texts = numbers.iloc[other].tolist()
                keys = np.fromiter(map(hash, texts), dtype=np.int64, count=len(texts))
                result[of_kind[other]] = self.first_rows((kind, "h"), keys, rows[of_kind[other]])
        return result

    def first_rows(self, space: Hashable, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each integer key of ``space``, the earlier row it first appeared on, else 0;
        then remember the keys first seen here. ``rows`` must increase."""
        runs = self._spaces.setdefault(space, [])
        n = len(keys)
        keys = np.asarray(keys, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        # Sorted first: binary searches for ascending keys walk the runs in cache order.
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        earlier_sorted = np.zeros(n, dtype=np.int64)
        for run_keys, run_rows in runs:
            pos = np.searchsorted(run_keys, ordered).clip(max=len(run_keys) - 1)
            hit = (run_keys[pos] == ordered) & (earlier_sorted == 0)
            earlier_sorted[hit] = run_rows[pos[hit]]
        earlier = np.empty(n, dtype=np.int64)
        earlier[order] = earlier_sorted
        starts = np.ones(n, dtype=bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        # With a stable sort the first element of each group is its first row in this chunk.
        group_first = order[starts][np.cumsum(starts) - 1]
        within = np.where(starts, 0, rows[group_first])
        in_chunk = np.empty(n, dtype=np.int64)
        in_chunk[order] = within
        result = np.where(earlier != 0, earlier, in_chunk)
        new = starts & (earlier_sorted == 0)
        if new.any():
            runs.append((ordered[new], rows[order][new]))
        if len(runs) > _MAX_RUNS:
            merged_keys = np.concatenate([k for k, _ in runs])
            merged_rows = np.concatenate([r for _, r in runs])
            merge_order = np.argsort(merged_keys, kind="stable")
            runs[:] = [(merged_keys[merge_order], merged_rows[merge_order])]
        return result
