"""The tests' shared polling helper: it returns what it waited for and fails by name."""

from __future__ import annotations

import pytest
from support import poll_until


def test_poll_until_returns_the_first_truthy_value() -> None:
    """The predicate is called until it returns something truthy, which is returned."""
    values = iter([None, 0, "", {"done": 3}])
    assert poll_until(lambda: next(values), 5, "a value", interval=0.001) == {"done": 3}


def test_poll_until_fails_naming_what_and_the_last_value() -> None:
    """On timeout an AssertionError names what was awaited and the last value seen."""
    calls: list[int] = []

    def never() -> list[int]:
        calls.append(1)
        return []

    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: \[\]"):
        poll_until(never, 0.05, "the answer", interval=0.01)
    assert len(calls) >= 2, "polled more than once before giving up"
