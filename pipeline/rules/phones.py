"""Phone numbers to E.164: a vectorised fast path that agrees with ``phonenumbers``, the
library itself for everything else.

``phonenumbers`` parses each number in Python, far too slow for a million rows. Most numbers in
a file are written a few plain ways for the customer's country of residence
(``+971501234567``, ``00971501234567``, ``971501234567``, ``0501234567``, with or without
spaces and dashes), or as ``+<cc>...`` of another country. For those the library's decision is
a pure function of its own metadata: the national number must match the region's general
pattern and one number-type pattern (with that type's possible lengths), and no national
prefix may be strippable. The fast path evaluates exactly those patterns with vectorised
regular expressions (RE2 through Arrow), so it accepts only what the library accepts, with
the same E.164 result. It rejects on its own only a digits-only international number
(``+<cc>`` or ``00<cc>``) of a region that owns its country code alone, where the library
could not decide otherwise. Everything else goes to the library, once per distinct
(value, region), through a bounded cache.
``tests/unit/test_rules_fastpaths.py`` checks the agreement on thousands of numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat

from pipeline.rules import columns

# Separators people type inside numbers; removing them never changes what the library sees,
# because it drops them too.
_SEPARATORS = r"[\s\-().]"
# A region needs this many rows in a batch before building its fast path pays off.
_FAST_PATH_MIN_ROWS = 64
# Bounded so a file of odd spellings cannot grow memory: ~10 MB at most.
_CACHE_LIMIT = 50_000


def _re2_ok(pattern: str) -> bool:
    """Whether the vectorised engine (RE2 via pyarrow) accepts the pattern."""
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _TypeCheck:
    """One number type of a region: its pattern (anchored) and the lengths it allows."""

    pattern: str
    lengths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """The metadata of one region, compiled for vectorised checks."""

    region: str
    country_code: str
    general: str
    general_lengths: tuple[int, ...]
    types: tuple[_TypeCheck, ...]
    # Anchored national-prefix pattern: a national number it matches could be rewritten by the
    # library, so such numbers are left to the library.
    national_prefix_pattern: str | None
    idd_is_00: bool
    national_prefix_is_0: bool
    # True when no other region shares the country code, so a failed check is final.
    sole_region: bool

    def valid_nsn(self, nsn: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Masks over national significant numbers: valid for the library, and prefix-free.

        A digits-only number whose start cannot be read as a national prefix reaches the
        library's validity test unchanged, so for it "not valid here" is the library's answer
        too (when the region owns its country code alone).
        """
        lengths = nsn.str.len().to_numpy()
        ok: np.ndarray = np.isin(lengths, self.general_lengths)
        if ok.any():
            ok = ok & nsn.str.fullmatch(self.general).to_numpy(dtype=bool, na_value=False)
        if self.national_prefix_pattern is not None and ok.any():
            where = np.flatnonzero(ok)
            ok[where[self._prefixed(nsn.iloc[where])]] = False
        typed = np.zeros(len(nsn), dtype=bool)
        for check in self.types:
            candidates = ok & ~typed & np.isin(lengths, check.lengths)
            if not candidates.any():
                continue
            where = np.flatnonzero(candidates)
            hit = nsn.iloc[where].str.fullmatch(check.pattern).to_numpy(dtype=bool, na_value=False)
            typed[where[hit]] = True
        valid = ok & typed
        plain = np.zeros(len(nsn), dtype=bool)
        rest = np.flatnonzero(~valid)
        if len(rest):
            others = nsn.iloc[rest]
            digits = others.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool, na_value=False)
            if self.national_prefix_pattern is not None:
                digits = digits & ~self._prefixed(others)
            plain[rest[digits]] = True
        return valid, plain

    def _prefixed(self, nsn: pd.Series) -> np.ndarray:
        """Mask of numbers that start with something the library could strip as a prefix."""
        pattern = self.national_prefix_pattern or ""
        literal = pattern[3:-1]
        if literal.isdigit():
            # Most regions' prefix is a plain digit string: a cheaper test than a regex.
            return nsn.str.startswith(literal).to_numpy(dtype=bool, na_value=False)
        return nsn.str.match(pattern).to_numpy(dtype=bool, na_value=False)


def build_plan(region: str) -> RegionPlan | None:
    """Compile a region's metadata, or None when the fast path cannot be exact for it."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, ())
    # The library picks the first region of a shared country code whose patterns fit; only
    # when ours comes first and has no leading-digit rule is "valid for ours" the same answer.
    if not regions or regions[0] != region or metadata.leading_digits is not None:
        return None
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return None
    general_lengths = tuple(n for n in general.possible_length if n > 0)
    # Mobile and fixed-line first: almost every number is one, so later types see few rows.
    descs = (
        metadata.mobile,
        metadata.fixed_line,
        metadata.toll_free,
        metadata.premium_rate,
        metadata.shared_cost,
        metadata.personal_number,
        metadata.voip,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )
    types: list[_TypeCheck] = []
    for desc in descs:
        if desc is None or not desc.national_number_pattern:
            continue
        lengths = tuple(desc.possible_length) or general_lengths
        lengths = tuple(n for n in lengths if n > 0)
        if lengths:
            types.append(_TypeCheck(desc.national_number_pattern, lengths))
    npfp = metadata.national_prefix_for_parsing
    prefix_pattern = f"(?:{npfp})" if npfp else None
    patterns = [general.national_number_pattern, *(t.pattern for t in types)]
    if prefix_pattern is not None:
        patterns.append(prefix_pattern)
    if not types or not all(_re2_ok(p) for p in patterns):
        return None
    idd = metadata.international_prefix
    return RegionPlan(
        region=region,
        country_code=str(metadata.country_code),
        general=general.national_number_pattern,
        general_lengths=general_lengths,
        types=tuple(types),
        national_prefix_pattern=prefix_pattern,
        # A literal "00" IDD is the only one whose match on "00<cc>..." is certainly "00", and
        # with it no national number starting with a single "0" can be read as an IDD.
        idd_is_00=idd == "00",
        sole_region=len(regions) == 1,
        national_prefix_is_0=(
            idd == "00"
            and metadata.national_prefix == "0"
            and npfp in (None, "0")
            and not metadata.national_prefix_transform_rule
        ),
    )


class PhoneNormaliser:
    """Turns phone numbers into E.164 strings, region by region, and says which are valid."""

    def __init__(self) -> None:
        self._plans: dict[str, RegionPlan | None] = {}
        self._cache: dict[tuple[str, str], str] = {}
        self.library_calls = 0

    def plan(self, region: str) -> RegionPlan | None:
        """The compiled fast path of a region (cached)."""
        if region not in self._plans:
            self._plans[region] = build_plan(region)
        return self._plans[region]

    def library(self, value: str, region: str) -> str:
        """E.164 form by the library itself, "" when it is not a valid number."""
        key = (value, region)
        found = self._cache.get(key)
        if found is not None:
            return found
        self.library_calls += 1
        try:
            number = phonenumbers.parse(value, region or None)
        except NumberParseException:
            result = ""
        else:
            valid = phonenumbers.is_valid_number(number)
            result = phonenumbers.format_number(number, PhoneNumberFormat.E164) if valid else ""
        if len(self._cache) >= _CACHE_LIMIT:
            # Values rarely repeat across a big file; a full reset keeps memory flat.
            self._cache.clear()
        self._cache[key] = result
        return result

    def normalise(self, values: pd.Series, regions: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """E.164 form of each value (the value itself where invalid) and the validity mask.

        ``regions`` holds the ISO alpha-2 default region of each value.
        """
        done = np.zeros(len(values), dtype=bool)
        valid = np.zeros(len(values), dtype=bool)
        pieces: list[tuple[np.ndarray, pd.Series]] = []
        self._by_region(values, regions, np.arange(len(values)), done, valid, pieces)
        # International numbers of other countries: for a "+" number the default region plays
        # no part, its own country code decides, so the fast path of that country applies.
        plus = np.flatnonzero(
            ~done & values.str.startswith("+").to_numpy(dtype=bool, na_value=False)
        )
        if len(plus) >= _FAST_PATH_MIN_ROWS:
            subset = values.iloc[plus]
            self._by_region(subset, _number_regions(subset), plus, done, valid, pieces)
        left = np.flatnonzero(~done)
        if len(left):
            vals = values.iloc[left].tolist()
            regs = regions.iloc[left].tolist()
            found = [self.library(v, r) for v, r in zip(vals, regs, strict=True)]
            ok = np.array([bool(f) for f in found], dtype=bool)
            valid[left[ok]] = True
            good = [f for f in found if f]
            pieces.append((left[ok], pd.Series(good, dtype="str")))
        return columns.scatter(values, pieces), valid

    def _by_region(
        self,
        values: pd.Series,
        regions: pd.Series,
        rows: np.ndarray,
        done: np.ndarray,
        valid: np.ndarray,
        pieces: list[tuple[np.ndarray, pd.Series]],
    ) -> None:
        """Run the fast path of each region with enough rows (``rows`` maps to the batch)."""
        counts = regions.value_counts()
        for region, count in counts.items():
            plan = self.plan(str(region)) if count >= _FAST_PATH_MIN_ROWS else None
            if plan is None:
                continue
            if len(counts) == 1:
                mine = np.arange(len(values))
                subset = values
            else:
                mine = np.flatnonzero((regions == region).to_numpy(dtype=bool, na_value=False))
                subset = values.iloc[mine]
            self._fast(plan, subset, rows[mine], done, valid, pieces, rewritten=False)
            left = np.flatnonzero(~done[rows[mine]])
            if len(left):
                # Arrow's RE2 kernel: pandas' regex replace loops in Python.
                spaced = columns.arrow(subset.iloc[left])
                cleaned = columns.series(
                    pc.replace_substring_regex(spaced, _SEPARATORS, ""), pd.RangeIndex(len(left))
                )
                self._fast(plan, cleaned, rows[mine[left]], done, valid, pieces, rewritten=True)

    @staticmethod
    def _fast(
        plan: RegionPlan,
        values: pd.Series,
        rows: np.ndarray,
        done: np.ndarray,
        valid: np.ndarray,
        pieces: list[tuple[np.ndarray, pd.Series]],
        *,
        rewritten: bool,
    ) -> None:
        """Decide the plain spellings of ``plan``'s region, collecting accepted E.164 forms.

        ``rewritten``: ``values`` are not the input as typed (separators removed).
        """
        prefixes = [f"+{plan.country_code}"]
        if plan.idd_is_00:
            prefixes.append(f"00{plan.country_code}")
        taken = np.zeros(len(values), dtype=bool)
        for prefix in prefixes:
            starts = values.str.startswith(prefix).to_numpy(dtype=bool, na_value=False)
            taken |= starts
            where = np.flatnonzero(starts)
            if len(where):
                nsn = values.iloc[where].str.slice(len(prefix))
                PhoneNormaliser._accept(
                    plan,
                    nsn,
                    rows[where],
                    done,
                    valid,
                    # An untouched "+<cc><nsn>" already is the E.164 form: nothing to write back.
                    None if prefix.startswith("+") and not rewritten else pieces,
                    final=plan.sole_region,
                )
        # The country code without "+" (common in bank exports): the library strips it only
        # when the whole number is not itself a possible national number.
        bare = values.str.startswith(plan.country_code).to_numpy(dtype=bool, na_value=False)
        where = np.flatnonzero(bare & ~taken)
        if len(where):
            full = values.iloc[where]
            national = full.str.fullmatch(plan.general).to_numpy(dtype=bool, na_value=False)
            where = where[~national]
            if len(where):
                nsn = values.iloc[where].str.slice(len(plan.country_code))
                PhoneNormaliser._accept(plan, nsn, rows[where], done, valid, pieces, final=False)
        if plan.national_prefix_is_0:
            # "00..." is an international prefix, never a national one.
            national = values.str.startswith("0").to_numpy(dtype=bool, na_value=False) & ~(
                values.str.startswith("00").to_numpy(dtype=bool, na_value=False)
            )
            where = np.flatnonzero(national & ~taken)
            if len(where):
                nsn = values.iloc[where].str.slice(1)
                PhoneNormaliser._accept(plan, nsn, rows[where], done, valid, pieces, final=False)

    @staticmethod
    def _accept(
        plan: RegionPlan,
        nsn: pd.Series,
        rows: np.ndarray,
        done: np.ndarray,
        valid: np.ndarray,
        pieces: list[tuple[np.ndarray, pd.Series]] | None,
        *,
        final: bool,
    ) -> None:
        """Collect the E.164 form of every national number the region's patterns accept, and
        (when ``final``) mark the plain ones they reject as decided and invalid."""
        ok, plain = plan.valid_nsn(nsn)
        if final:
            done[rows[plain & ~ok]] = True
        if ok.any():
            accepted = rows[ok]
            if pieces is not None:
                kept = nsn if ok.all() else nsn.iloc[np.flatnonzero(ok)]
                pieces.append((accepted, "+" + plan.country_code + kept))
            done[accepted] = True
            valid[accepted] = True


def _number_regions(values: pd.Series) -> pd.Series:
    """For "+" numbers, the main region of their country code ("" when there is none)."""
    heads = columns.arrow(values.str.slice(1, 4))
    distinct = pc.unique(heads)
    owners = [_region_of_head(head) for head in distinct.to_pylist()]
    found = pa.array(owners, type=pa.large_string()).take(pc.index_in(heads, value_set=distinct))
    return columns.series(found, values.index)


def _region_of_head(head: str | None) -> str:
    """The main region of the country code a number's first digits spell, else ""."""
    # Country codes are prefix-free, so the first match is the only one.
    for size in (1, 2, 3):
        digits = (head or "")[:size]
        if len(digits) == size and digits.isdigit():
            owners = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits))
            if owners:
                return str(owners[0])
    return ""
