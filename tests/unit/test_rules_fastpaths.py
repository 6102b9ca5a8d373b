"""The vectorised fast paths for phones and e-mails give exactly the libraries' answers."""

from __future__ import annotations

import random

import pandas as pd
import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from pipeline.rules.emails import EmailNormaliser
from pipeline.rules.phones import PhoneNormaliser, build_plan

REGIONS = ["AE", "GB", "IN", "SA", "PK", "EG", "PH", "DE", "FR", "US"]


def library_e164(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def phone_samples(region: str, rng: random.Random) -> list[str]:
    """Valid examples in every spelling, plus random and mutated numbers."""
    cc = str(phonenumbers.country_code_for_region(region))
    values: list[str] = []
    for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        nsn = phonenumbers.national_significant_number(example)
        for _ in range(20):
            tail = list(nsn)
            for _ in range(rng.randint(0, 2)):
                tail[rng.randrange(len(tail))] = str(rng.randrange(10))
            digits = "".join(tail)
            values += [
                f"+{cc}{digits}",
                f"00{cc}{digits}",
                f"0{digits}",
                f"+{cc} {digits}",
                f"{cc}{digits}",
                f"{cc}0{digits}",
                digits,
            ]
    for _ in range(150):
        digits = "".join(str(rng.randrange(10)) for _ in range(rng.randint(5, 13)))
        values += [
            f"+{cc}{digits}",
            f"0{digits}",
            f"00{cc}{digits}",
            f"+{cc}0{digits}",
            cc + digits,
        ]
    return values


@pytest.mark.parametrize("region", REGIONS)
def test_phone_fast_path_agrees_with_library(region: str) -> None:
    """For every spelling, valid or not, the result equals phonenumbers' own E.164 answer."""
    rng = random.Random(region)
    values = phone_samples(region, rng)
    normaliser = PhoneNormaliser()
    got, valid = normaliser.normalise(
        pd.Series(values, dtype="str"), pd.Series([region] * len(values), dtype="str")
    )
    expected = [library_e164(v, region) for v in values]
    mismatches = [
        (v, g, ok, e)
        for v, g, ok, e in zip(values, got.tolist(), valid.tolist(), expected, strict=True)
        if ok != bool(e) or g != (e or v)
    ]
    assert mismatches == []
    assert any(expected)
    # The fast path decided most rows; the library saw only the rest.
    assert normaliser.library_calls < len(values)


def test_foreign_international_numbers_agree_with_library() -> None:
    """ "+" numbers of other countries (shared country codes too) get the library's answer
    whatever the customer's country of residence."""
    rng = random.Random(11)
    values: list[str] = []
    for region in ["GB", "IN", "PH", "EG", "CA", "IT", "RU", "KZ", "CN", "US", "PK", "JE"]:
        cc = phonenumbers.country_code_for_region(region)
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            for _ in range(40):
                tail = list(nsn)
                tail[rng.randrange(len(tail))] = str(rng.randrange(10))
                values += [f"+{cc}{''.join(tail)}", f"+{cc} {''.join(tail)}"]
    regions = ["AE"] * len(values)
    normaliser = PhoneNormaliser()
    got, valid = normaliser.normalise(
        pd.Series(values, dtype="str"), pd.Series(regions, dtype="str")
    )
    expected = [library_e164(v, "AE") for v in values]
    assert valid.tolist() == [bool(e) for e in expected]
    assert got.tolist() == [e or v for e, v in zip(expected, values, strict=True)]
    assert normaliser.library_calls < len(values) / 2


def test_phone_fast_path_does_the_bulk_of_the_work() -> None:
    """Plain UAE mobiles in the usual spellings never reach the library."""
    rng = random.Random(7)
    values = [
        rng.choice(["+97150", "0097155", "052", "97154"]) + f"{rng.randrange(10**7):07d}"
        for _ in range(2000)
    ]
    normaliser = PhoneNormaliser()
    got, valid = normaliser.normalise(
        pd.Series(values, dtype="str"), pd.Series(["AE"] * len(values), dtype="str")
    )
    assert normaliser.library_calls == 0
    assert valid.all()
    assert all(v.startswith("+9715") and len(v) == 13 for v in got)
    assert build_plan("AE") is not None
    # Shared country codes where the region is not the main one go to the library.
    assert build_plan("CA") is None


EMAILS = [
    "amal.haddad@example.com",
    "Amal.Haddad@Example.COM",
    "a+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example",
    "a@-example.com",
    "a@example-.com",
    "a@ex--ample.com",
    "a@xn--bcher-kva.com",
    "a@example.local",
    "a@example.LOCAL",
    "a@sub.test",
    "a@example.c",
    "a@example.123",
    "a@123.example.com",
    "a@[127.0.0.1]",
    '"quoted"@example.com',
    "amal@exämple.com",
    "ämal@example.com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a b@example.com",
    "a@example.com.",
    "@example.com",
    "a@@example.com",
    "A@EXAMPLE.COM",
    "user@localhost",
    "user@onion.example.onion",
    "A@Sub.Test",
    "a@EXAMPLE.Local",
    "x@Example.Onion.com",
]


def library_email(value: str) -> str:
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError:
        return ""


def test_email_fast_path_agrees_with_library() -> None:
    """Every address, plain or tricky, gets the library's verdict and normalised form."""
    got, valid = EmailNormaliser().normalise(pd.Series(EMAILS, dtype="str"))
    expected = [library_email(v) for v in EMAILS]
    assert valid.tolist() == [bool(e) for e in expected]
    assert got.tolist() == [e or v for e, v in zip(expected, EMAILS, strict=True)]


def test_email_fast_path_does_the_bulk_of_the_work() -> None:
    """Plain addresses never reach the library."""
    values = [f"user.{i}@mail{i % 7}.example.com" for i in range(1000)]
    normaliser = EmailNormaliser()
    got, valid = normaliser.normalise(pd.Series(values, dtype="str"))
    assert normaliser.library_calls == 0
    assert valid.all()
    assert got.tolist() == values
