"""The masking processor keeps personal data and secrets out of every log line."""

from __future__ import annotations

from pipeline.logs import mask_processor


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
