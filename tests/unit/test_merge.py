"""Folding reruns into a parent report (pipeline.core.merge) and the follow-up state rules
(pipeline.core.followup): pure functions, called directly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipeline.core.followup import CustomerStatus, needs_follow_up
from pipeline.core.merge import chain_order, fold, fold_row


@dataclass(frozen=True)
class Rec:
    """A row record as the store keeps it (the fields folding reads)."""

    outcome: str
    ecrn: str = ""
    attempts: int = 0
    error_code: str = ""


def test_latest_outcome_wins_and_attempts_add_up() -> None:
    """A failed row onboarded by a rerun reads onboarded, with the ecrn of the rerun and the
    attempts of both batches."""
    merged = fold_row([Rec("failed", attempts=3, error_code="partner_unavailable"),
                       Rec("onboarded", "1000000000000042", 2)])
    assert merged == Rec("onboarded", "1000000000000042", 5)


def test_rows_a_rerun_did_not_reach_keep_the_earlier_word() -> None:
    """A rerun without a record for a row (not selected, or still pending) changes nothing."""
    parent = Rec("rejected", attempts=1, error_code="partner:45051")
    assert fold_row([parent, None, None]) is parent
    assert fold_row([None, None]) is None


def test_an_earlier_ecrn_survives_a_later_record_without_one() -> None:
    """An update row rejected later keeps the ecrn known from the parent."""
    merged = fold_row([Rec("failed", "1000000000000007", 1), Rec("rejected", "", 1)])
    assert merged == Rec("rejected", "1000000000000007", 2)


def test_a_chain_folds_in_order() -> None:
    """Parent, rerun, rerun of the rerun: the last word is the grandchild's."""
    rows = fold([
        [Rec("failed", attempts=3), Rec("invalid"), Rec("onboarded", "1", 2)],
        [Rec("failed", attempts=3), Rec("rejected", attempts=1), None],
        [Rec("onboarded", "2", 2), None, None],
    ])
    assert rows == [Rec("onboarded", "2", 8), Rec("rejected", attempts=1), Rec("onboarded", "1", 2)]


def test_misaligned_batches_are_refused() -> None:
    """Records of different lengths cannot be folded row for row."""
    with pytest.raises(ValueError, match="aligned"):
        fold([[Rec("failed")], []])
    assert fold([]) == []


def test_chain_order_finds_descendants_by_creation_time() -> None:
    """Reruns of reruns are found; unrelated batches and the parent itself are left out;
    the order is creation order."""
    metas = {
        "p": {"created_at": "2026-01-01T00:00"},
        "a": {"parent_batch_id": "p", "created_at": "2026-01-01T01:00"},
        "b": {"parent_batch_id": "p", "created_at": "2026-01-01T03:00"},
        "a1": {"parent_batch_id": "a", "created_at": "2026-01-01T02:00"},
        "x": {"parent_batch_id": "other", "created_at": "2026-01-01T01:30"},
        "loop": {"parent_batch_id": "loop", "created_at": "2026-01-01T04:00"},
    }
    assert chain_order("p", metas) == ["a", "a1", "b"]
    assert chain_order("a", metas) == ["a1"]
    assert chain_order("x", metas) == []


@pytest.mark.parametrize(
    ("customer", "aml", "open_"),
    [
        ("KYC PENDING", "Accepted", True),
        ("kyc  pending", None, True),
        ("ACTIVE", "Under Investigation", True),
        ("ACTIVE", "Accepted", False),
        ("REJECTED", "Rejected", False),
        (None, None, False),
    ],
)
def test_non_final_states(customer: str | None, aml: str | None, open_: bool) -> None:
    """KYC PENDING and Under Investigation (any case, any spacing) need a follow-up; other
    states do not."""
    assert needs_follow_up(customer, aml) is open_


def test_customer_status_round_trips_through_json() -> None:
    """The stored form reads back equal, and ``final`` follows the two values."""
    status = CustomerStatus("1000000000000042", "KYC PENDING", "Accepted", "2026-01-01T00:00")
    assert CustomerStatus.from_json(status.to_json()) == status
    assert not status.final
    assert CustomerStatus("1", "ACTIVE", "Accepted").final
