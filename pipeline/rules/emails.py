"""E-mail addresses checked by ``email-validator``, with a vectorised fast path for plain ones.

The library checks each address in Python, far too slow for a million rows. Almost every real
address is plain ASCII: a dot-atom local part of at most 64 characters and a domain of
letter/digit/hyphen labels with an alphabetic top-level domain. For such an address the
library's syntax checks all pass and its normalised form is the local part unchanged plus the
domain in lower case. The fast path accepts exactly that subset (no label with a double hyphen,
no special-use domain, short enough that no length limit applies) and sends every other value
to the library, once per distinct value, through a bounded cache.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from pipeline.rules import columns

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
PLAIN_EMAIL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"
# Special-use names are single labels, so a domain is special exactly when its last label is
# (a plain domain has at least one dot).
_SPECIAL_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)
# Short enough that the library's limits (64 before the @, 253 after, 63 per label) cannot bite.
_MAX_PLAIN_LOCAL = 64
_MAX_PLAIN_DOMAIN = 63
# Bounded so a file of odd spellings cannot grow memory: ~10 MB at most.
_CACHE_LIMIT = 50_000


class EmailNormaliser:
    """Normalises addresses as email-validator does and says which it would reject."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}
        self.library_calls = 0

    def library(self, value: str) -> str:
        """The library's normalised form, "" when it rejects the address."""
        found = self._cache.get(value)
        if found is not None:
            return found
        self.library_calls += 1
        try:
            result = validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError:
            result = ""
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[value] = result
        return str(result)

    def normalise(self, values: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """Normalised address for each value (the value itself where invalid), and validity."""
        valid = values.str.fullmatch(PLAIN_EMAIL).to_numpy(dtype=bool, na_value=False).copy()
        pieces: list[tuple[np.ndarray, pd.Series]] = []
        where = np.flatnonzero(valid)
        if len(where):
            candidates = values if len(where) == len(values) else values.iloc[where]
            # Up to 65 characters neither part can pass its limit; longer ones are measured.
            fits = candidates.str.len().to_numpy() <= _MAX_PLAIN_LOCAL + 1
            long = np.flatnonzero(~fits)
            if len(long):
                longer = candidates.iloc[long]
                at = longer.str.find("@").to_numpy()
                domain_len = longer.str.len().to_numpy() - at - 1
                fits[long] = (at <= _MAX_PLAIN_LOCAL) & (domain_len <= _MAX_PLAIN_DOMAIN)
            upper = candidates.str.contains("@.*[A-Z]", regex=True).to_numpy(
                dtype=bool, na_value=False
            )
            special = (
                candidates.str.endswith(_SPECIAL_SUFFIXES)
                .to_numpy(dtype=bool, na_value=False)
                .copy()
            )
            mixed = np.flatnonzero(fits & upper)
            if len(mixed):
                lowered = [_lower_domain(v) for v in candidates.iloc[mixed].tolist()]
                # A special-use domain written in capitals shows only once lower-cased.
                odd = np.array([v.endswith(_SPECIAL_SUFFIXES) for v in lowered], dtype=bool)
                special[mixed[odd]] = True
                kept = [v for v, o in zip(lowered, odd, strict=True) if not o]
                pieces.append((where[mixed[~odd]], pd.Series(kept, dtype="str")))
            # Lower-case plain addresses are already in normal form; the rest go to the library.
            valid[where[~fits | special]] = False
        rest = np.flatnonzero(~valid)
        if len(rest):
            found = [self.library(v) for v in values.iloc[rest].tolist()]
            ok = np.array([bool(f) for f in found], dtype=bool)
            valid[rest[ok]] = True
            pieces.append((rest[ok], pd.Series([f for f in found if f], dtype="str")))
        normal = columns.scatter(values, pieces)
        return normal, valid


def _lower_domain(value: str) -> str:
    """A plain address with its domain in lower case."""
    local, _, domain = value.partition("@")
    return f"{local}@{domain.lower()}"
