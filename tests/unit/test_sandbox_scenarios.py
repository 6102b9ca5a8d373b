"""The shipped scenario table matches the contract in docs/architecture.md, and broken
scenario files are reported with the file and entry named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox.config import SAMPLE_DATA
from sandbox.scenarios import Case, ScenarioError, load_scenarios, parse_scenarios

ROOT = Path(__file__).resolve().parents[2]


def contract_table() -> dict[str, str]:
    """``{id_number: case}`` from the scenario table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return {
        match.group(2): match.group(1)
        for match in re.finditer(r"^\| (\w+) \| (\d{15}) \|", text, flags=re.MULTILINE)
    }


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_shipped_file_is_exactly_the_contract_table() -> None:
    """Every ID number of the architecture table is in scenarios.toml with the same case,
    and the file holds nothing else."""
    shipped = load_scenarios(SAMPLE_DATA / "scenarios.toml")
    expected = contract_table()
    assert len(expected) == len(Case)
    assert {number: s.case.value for number, s in shipped.items()} == expected


def test_scenario_ids_are_valid_emirates_ids() -> None:
    """Scenario IDs pass the Emirates ID rules (784, 15 digits, Luhn) so rows using them
    get through local validation to the sandbox."""
    for number in load_scenarios(SAMPLE_DATA / "scenarios.toml"):
        assert len(number) == 15 and number.startswith("784") and luhn_ok(number), number


def test_existing_and_compliance_carry_ecrns() -> None:
    """The pre-loaded customer has the contract's ecrn; compliance quotes one too."""
    shipped = load_scenarios(SAMPLE_DATA / "scenarios.toml")
    assert shipped["784198090000005"].ecrn == "1000000000000005"
    assert shipped["784198890000080"].ecrn is not None
    assert shipped["784198990000097"].details


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('["1"]\ncase = "nope"\n', "unknown case 'nope'"),
        ('["1"]\ncase = "existing"\necrn = "123"\n', "ecrn must be a 16-digit string"),
        ('["1"]\ncase = "slow"\ncolour = "red"\n', "unknown key(s) colour"),
        ('["1"]\ncase = "blocked"\ndetails = { a = 1 }\n', "details must be a table of strings"),
        ('"1" = "slow"\n', "must be a table"),
        ("[unclosed\n", "not valid TOML"),
    ],
)
def test_broken_entries_are_named(text: str, problem: str) -> None:
    """Each kind of mistake in a scenario file gives a message naming the file and entry."""
    with pytest.raises(ScenarioError) as caught:
        parse_scenarios(text, "my.toml")
    assert str(caught.value).startswith("my.toml")
    assert problem in str(caught.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A scenario file that does not exist gives a ScenarioError naming its path."""
    with pytest.raises(ScenarioError, match=r"missing\.toml"):
        load_scenarios(tmp_path / "missing.toml")
