"""Folding reruns into their parent's outcomes: the rules of ``onboard report BATCH --merged``.

Pure: records come in as plain objects with ``outcome``, ``ecrn`` and ``attempts`` (the
store's ``RowRecord`` is one), one sequence per batch, parent first, then its reruns in the
order they ran (a rerun of a rerun after the rerun it came from). For each row:

- the outcome, error columns and ecrn are those of the latest batch that recorded the row (a
  rerun that has not reached the row yet leaves the earlier word standing);
- an ecrn known from an earlier batch stays when the later record has none;
- ``attempts`` is the sum over every batch that recorded the row (partner calls the row cost
  in total).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar


class Record(Protocol):
    """What folding needs from a row record (a frozen dataclass)."""

    @property
    def ecrn(self) -> str:
        """The customer reference, or ""."""
        ...

    @property
    def attempts(self) -> int:
        """Partner calls the row took in that batch."""
        ...


R = TypeVar("R", bound=Record)


def fold_row(records: Sequence[R | None]) -> R | None:
    """One row's merged record from its records in batch order (None: no batch has it)."""
    present = [r for r in records if r is not None]
    if not present:
        return None
    latest = present[-1]
    ecrn = next((r.ecrn for r in reversed(present) if r.ecrn), "")
    attempts = sum(r.attempts for r in present)
    if ecrn == latest.ecrn and attempts == latest.attempts:
        return latest
    return dataclasses.replace(latest, ecrn=ecrn, attempts=attempts)  # type: ignore[type-var]


def fold(batches: Sequence[Sequence[R | None]]) -> list[R | None]:
    """Row-by-row :func:`fold_row` over aligned per-batch record lists (parent first)."""
    if not batches:
        return []
    width = len(batches[0])
    if any(len(b) != width for b in batches):
        raise ValueError("every batch's records must be aligned on the same rows")
    return [fold_row([b[i] for b in batches]) for i in range(width)]


def chain_order(parent: str, metas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The reruns descending from ``parent`` in the order they were created.

    ``metas`` maps batch id → meta fields (``parent_batch_id``, ``created_at``). A rerun is
    always created after the batch it reruns, so creation order is also fold order along any
    chain; batches unrelated to ``parent`` are left out.
    """
    children: dict[str, list[str]] = {}
    for batch_id, meta in metas.items():
        up = str(meta.get("parent_batch_id") or "")
        if up and up != batch_id:
            children.setdefault(up, []).append(batch_id)
    found: list[str] = []
    todo = [parent]
    seen = {parent}
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return sorted(found, key=lambda b: (str(metas[b].get("created_at") or ""), b))
