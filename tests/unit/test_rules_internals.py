"""The vectorised building blocks: ISO dates, Arrow column helpers, the duplicate tracker."""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pandas as pd

from pipeline.rules.checks import parse_dates
from pipeline.rules.columns import fixed_width, nonempty, scatter
from pipeline.rules.duplicates import DuplicateTracker


def test_iso_dates_agree_with_python_calendar() -> None:
    """Every NNNN-NN-NN string is a date exactly when Python's calendar says so, same day."""
    rng = random.Random(3)
    years = [1, 4, 100, 400, 1600, 1900, 1999, 2000, 2024, 2100, 9999]
    values = [
        f"{rng.choice([*years, rng.randrange(10000)]):04d}"
        f"-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}"
        for _ in range(5000)
    ] + ["2024-02-29", "2023-02-29", "2000-02-29", "1900-02-29", "0000-01-01"]
    days, text = parse_dates(pd.Series(values, dtype="str"), day_first=False)
    for value, got in zip(values, days, strict=True):
        try:
            expected = np.datetime64(date.fromisoformat(value), "D")
        except ValueError:
            assert np.isnat(got), value
        else:
            assert got == expected, value
    assert text.tolist() == values


def test_nonempty_and_scatter() -> None:
    """Empty and missing cells are empty; scatter writes pieces at their positions, in order."""
    base = pd.Series(["a", "", "c", None, "e"], dtype="str")
    assert nonempty(base).tolist() == [True, False, True, False, True]
    got = scatter(
        base,
        [
            (np.array([4, 0]), pd.Series(["E", "A"], dtype="str")),
            (np.array([2]), pd.Series(["C"], dtype="str")),
        ],
    )
    assert got.tolist()[:3] == ["A", "", "C"]
    assert got.iloc[4] == "E"
    assert scatter(base, []) is base
    assert fixed_width(pd.Series(["ab", "cd"], dtype="str").iloc[1:], 2).tobytes() == b"cd"


def test_duplicate_tracker_across_many_chunks() -> None:
    """IDs repeat across many chunks (runs get merged); leading zeros and types keep IDs apart."""
    tracker = DuplicateTracker()
    seen: dict[tuple[str, str], int] = {}
    rng = random.Random(5)
    row = 2
    for _ in range(12):
        types, numbers, rows, expected = [], [], [], []
        for _ in range(200):
            kind = rng.choice(["1", "4"])
            number = rng.choice(["", "0"]) + str(rng.randrange(1, 400))
            if rng.random() < 0.1:
                number = "P" + number
            types.append(kind)
            numbers.append(number)
            rows.append(row)
            expected.append(seen.get((kind, number), 0))
            seen.setdefault((kind, number), row)
            row += 1
        got = tracker.first_rows_of_ids(
            pd.Series(types, dtype="str"), pd.Series(numbers, dtype="str"), np.array(rows)
        )
        assert got.tolist() == expected
