"""The masking processor keeps personal data and secrets out of every log line."""

from __future__ import annotations

from pipeline.core.logs import mask_processor


def test_personal_keys_and_secrets_are_masked_at_any_depth() -> None:
    """Names, phones, dates of birth and secrets vanish; an ID keeps only its last 4 digits."""
    event = {
        "event": "request",
        "id_number": "784199554586091",
        "body": {"first_name": "Aisha", "date_of_birth": "1990-01-01",
                 "id_details": [{"id_number": "784199554586091"}]},
        "client_secret": "s3cret",
    }
    out = mask_processor(None, "info", dict(event))
    text = repr(out)
    for leaked in ("Aisha", "1990-01-01", "s3cret", "78419955458"):
        assert leaked not in text
    assert out["id_number"] == "***6091"


def test_free_text_is_scrubbed() -> None:
    """E-mail addresses, phone numbers and long digit runs inside messages are masked."""
    out = mask_processor(None, "info", {"event": "x", "message":
                                        "a@b.com +971 55 474 7002 id 784199554586091"})
    assert "a@b.com" not in out["message"]
    assert "474" not in out["message"]
    assert "6091" in out["message"]


def test_keys_that_are_never_personal_keep_their_digits() -> None:
    """Timestamps, batch/task/chunk ids and durations survive the free-text digit mask."""
    event = {
        "event": "chunk done",
        "timestamp": "2026-11-27T15:40:10.123456Z",
        "batch_id": "b-20261127-154010",
        "task_id": "0c1f6a2e-1234567-aa",
        "chunk_id": "b-20261127-154010:000123456",
        "level": "info",
        "duration_seconds": "1234567.5",
        "message": "customer 784199554586091 done",
    }
    out = mask_processor(None, "info", dict(event))
    for key in ("timestamp", "batch_id", "task_id", "chunk_id", "level", "duration_seconds"):
        assert out[key] == event[key]
    assert "78419955458" not in out["message"]


def test_personal_data_under_a_safe_key_still_masked() -> None:
    """A container under an exempt key is still searched, and personal keys win everywhere."""
    out = mask_processor(None, "info", {
        "event": "x",
        "rows": [{"first_name": "Aisha", "note": "call +971 55 474 7002"}],
        "batch_id": {"email": "a@b.com"},
    })
    text = repr(out)
    for leaked in ("Aisha", "474 7002", "a@b.com"):
        assert leaked not in text


def test_log_level_setting_accepts_any_case_and_defaults_to_unset() -> None:
    """ONBOARD_LOG_LEVEL parses case-blind; unset leaves each command its own default."""
    from pipeline.core.settings import Settings

    assert Settings(_env_file=None, log_level="debug").log_level == "DEBUG"
    assert Settings(_env_file=None, log_level="").log_level is None
