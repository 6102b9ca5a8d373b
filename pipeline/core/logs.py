"""structlog configuration with a masking processor, so personal data never reaches a log line.

Masking works on keys (any key that names personal data is masked, at any depth) and, as a
safety net, on free text (long digit runs, e-mail addresses and phone-like strings are
masked wherever they appear). ID numbers keep their last four digits because operators need
something to match a log line against a report row.

The free-text net is blind to meaning, so keys that never hold personal data (timestamps,
generated ids, levels, counts, durations) are exempt from it: otherwise it blanks timestamp
microseconds and any batch or task id with six digits in a row.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# Keys whose value is personal data or a secret. Compared after lower-casing.
SECRET_KEYS = frozenset(
    {"client_secret", "password", "access_token", "refresh_token", "authorization", "token"}
)
PERSONAL_KEYS = frozenset(
    {
        "first_name", "middle_name", "last_name", "preferred_name", "mothers_maiden_name",
        "name_as_per_id", "id_name_as_per_id", "salutation", "date_of_birth",
        "primary_mobile_number", "secondary_mobile_number", "phone_number", "mobile_number",
        "email_id", "email", "place_of_birth", "building_name", "street_name", "landmark",
        "address_building_name", "address_street_name", "address_landmark", "zip", "po_box",
        "address_zip", "address_po_box", "employer_name", "employer_address", "employer_phone",
        "tax_registration_number", "social_security_number", "base64_data", "id_front",
        "id_back", "visa_number", "id_visa_number", "customer_remarks",
    }
)
ID_KEYS = frozenset({"id_number", "idnumber", "ecrn"})
# Keys whose string value is never personal: left as it is by the free-text net. Generated ids
# only (a batch id, a Celery task id), never a customer's or the partner's.
SAFE_KEYS = frozenset(
    {
        "timestamp", "level", "logger", "event_id", "batch_id", "parent_batch_id", "task_id",
        "chunk_id", "chunk", "row_number", "rows", "count", "duration", "elapsed", "attempt",
        "attempts", "status_code", "queue",
    }
)
# Key endings of counts and durations, also never personal.
SAFE_SUFFIXES = ("_count", "_rows", "_seconds", "_ms", "_s", "_bytes", "_per_second")

MASK = "***"
_DIGITS = re.compile(r"\d{6,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d \-]{6,}\d")


def mask_id(value: object) -> str:
    """Show only the last four characters of an identifier."""
    text = str(value)
    return MASK + text[-4:] if len(text) > 4 else MASK


def mask_text(text: str) -> str:
    """Mask e-mail addresses, phone numbers and long digit runs inside free text."""
    text = _EMAIL.sub(MASK, text)
    text = _PHONE.sub(MASK, text)
    return _DIGITS.sub(lambda m: mask_id(m.group(0)), text)


def mask_value(key: str, value: Any) -> Any:
    """Mask one value according to its key, recursing into containers."""
    lowered = key.lower()
    if lowered in SECRET_KEYS or lowered in PERSONAL_KEYS:
        return MASK if value not in (None, "") else value
    if lowered in ID_KEYS:
        return mask_id(value) if value not in (None, "") else value
    if isinstance(value, str) and (lowered in SAFE_KEYS or lowered.endswith(SAFE_SUFFIXES)):
        # Strings only: a container under a safe-looking key is still searched.
        return value
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every personal or secret value in the event."""
    for key in list(event_dict):
        event_dict[key] = mask_value(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog once per process: JSON when not on a terminal, masking always.

    ``level`` is a level name (``DEBUG`` … ``CRITICAL``, any case); the CLI passes the
    ``ONBOARD_LOG_LEVEL`` setting or its per-command default.
    """
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
