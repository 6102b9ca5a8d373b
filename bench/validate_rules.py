"""Throughput of the local rules alone: ``Validator.validate_chunk`` over N synthetic rows.

Rows are generated in memory (nothing is written), every phone number, e-mail address and
Emirates ID distinct, a small share of them broken in different ways. Prints rows/s (wall and
CPU), how often the fast paths had to fall back to phonenumbers / email-validator, and what
those libraries cost per call, which is why the fast paths exist.

    .venv/bin/python bench/validate_rules.py --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
from email_validator import validate_email

from pipeline.core.masterdata import load_master_data
from pipeline.core.settings import SAMPLE_DATA, ValidationSettings
from pipeline.ingest.schema import CANONICAL_COLUMNS
from pipeline.ingest.table import Chunk
from pipeline.rules.validation import Validator


def emirates_ids(idx: np.ndarray) -> np.ndarray:
    """Valid 15-digit Emirates IDs (784, birth year 1985, Luhn check digit), one per index."""
    body = np.char.add("7841985", np.char.zfill(idx.astype(str), 7))
    digits = np.frombuffer("".join(body.tolist()).encode(), dtype=np.uint8).reshape(-1, 14) - 48
    weights = np.array([2 if (14 - j) % 2 == 1 else 1 for j in range(14)])
    products = digits.astype(np.int64) * weights
    check = (10 - (products // 10 + products % 10).sum(axis=1) % 10) % 10
    return np.char.add(body, check.astype(str))


def make_chunk(start: int, n: int, rng: np.random.Generator, invalid: float) -> Chunk:
    """One chunk of synthetic rows as ingest would hand it over."""
    idx = np.arange(start, start + n)
    text = idx.astype(str)

    def col(values: object) -> pd.Series:
        return pd.Series(values, dtype="str")

    def const(value: str) -> pd.Series:
        return col(np.full(n, value, dtype=object))

    data = {c: const("") for c in CANONICAL_COLUMNS}
    dob = np.datetime64("1950-01-01") + rng.integers(0, 18_000, n)
    data.update(
        channel=const("BULK"),
        agent_location_id=const("AGT001"),
        first_name=col(np.char.add("Name", text)),
        last_name=col(np.char.add("Family", text)),
        nationality=col(rng.choice(["AE", "IN", "PK", "ae", "GB", "Philippines"], n)),
        date_of_birth=col(np.datetime_as_string(dob, unit="D")),
        country_of_birth=col(rng.choice(["AE", "IN", "PK"], n)),
        country_of_residence=const("AE"),
        gender=col(rng.choice(["M", "F", "Male", "female"], n)),
        primary_mobile_number=col(
            np.char.add(
                rng.choice(["+97150", "+97155", "052", "+97156", "0097158", "+971 54 "], n),
                np.char.zfill((idx % 10_000_000).astype(str), 7),
            )
        ),
        email_id=col(np.char.add(np.char.add("user.", text), "@mail.example.com")),
        occupation_id=col(rng.choice(["1", "2", "3", "4"], n)),
        political_exposed_person=col(rng.choice(["N", "Y", "no", "false"], n)),
        id_type=const("4"),
        id_number=col(emirates_ids(idx)),
        id_issued_country=const("AE"),
        id_issued_on=const("2022-01-10"),
        id_date_of_expiry=const("2032-01-10"),
        address_type_id=const("1"),
        address_city=const("Dubai"),
        address_country=const("AE"),
    )
    broken = np.flatnonzero(rng.random(n) < invalid)
    for column, bad in (
        ("gender", "X"),
        ("primary_mobile_number", "+97151234"),
        ("email_id", "nobody@@example"),
        ("date_of_birth", "1990-02-30"),
        ("id_number", "784198500000000"),
    ):
        rows = broken[rng.random(len(broken)) < 0.3]
        values = data[column].to_numpy(dtype=object)
        values[rows] = bad
        data[column] = col(values)
    frame = pd.DataFrame(data)
    numbers = pd.Series(idx + 2, dtype="int64")
    return Chunk(raw=frame, rows=frame, row_numbers=numbers, read_errors={})


def library_cost() -> tuple[float, float]:
    """Microseconds per call of phonenumbers (parse+valid+format) and email-validator."""
    start = time.perf_counter()
    for i in range(2000):
        number = phonenumbers.parse(f"+97150{i:07d}", "AE")
        phonenumbers.is_valid_number(number)
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    phone = (time.perf_counter() - start) / 2000 * 1e6
    start = time.perf_counter()
    for i in range(2000):
        validate_email(f"user.{i}@mail.example.com", check_deliverability=False)
    email = (time.perf_counter() - start) / 2000 * 1e6
    return phone, email


def main() -> None:
    """Generate, validate, print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--invalid-rate", type=float, default=0.02)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    chunks = [
        make_chunk(start, min(args.chunk, args.rows - start), rng, args.invalid_rate)
        for start in range(0, args.rows, args.chunk)
    ]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    validator = Validator(
        load_master_data(SAMPLE_DATA / "master_data"),
        ValidationSettings(),
        base_dir=Path.cwd(),
        today=date(2026, 11, 27),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    invalid = 0
    for chunk in chunks:
        invalid += len(validator.validate_chunk(chunk).errors)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    phone_us, email_us = library_cost()
    print(f"rows                  {args.rows:,} in chunks of {args.chunk:,}")
    print(f"invalid rows          {invalid:,}")
    print(f"validate_chunk        {args.rows / wall:,.0f} rows/s wall ({wall:.2f} s)")
    print(f"                      {args.rows / cpu:,.0f} rows/s CPU ({cpu:.2f} s)")
    print(f"phonenumbers calls    {validator.phone_library_calls:,} ({phone_us:.1f} us each)")
    print(f"email-validator calls {validator.email_library_calls:,} ({email_us:.1f} us each)")
    print(f"peak RSS growth       {(rss_after - rss_before) / 1024:.0f} MB (input held in memory)")


if __name__ == "__main__":
    main()
