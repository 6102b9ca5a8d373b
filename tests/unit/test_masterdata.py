"""Master-data lists: codes, labels and aliases resolve to codes; versions follow content."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.masterdata import LIST_NAMES, MasterDataError, load_master_data, parse_list
from pipeline.core.settings import SAMPLE_DATA


def test_sample_lists_load_and_resolve_every_spelling() -> None:
    """Codes, labels and aliases all resolve; 'NA' is Namibia, not a missing value."""
    md = load_master_data(SAMPLE_DATA / "master_data")
    assert set(md.lists) == set(LIST_NAMES)
    assert md["countries"].resolve("NA") == "NA"
    assert md["countries"].resolve("ae") == "AE"
    assert md["countries"].resolve("United Arab Emirates") == "AE"
    assert md["genders"].resolve("Female") == "F"
    assert md["genders"].resolve("m") == "M"
    assert md["id_types"].resolve("Emirates ID") == "4"
    assert md["countries"].resolve("Atlantis") is None


def test_version_changes_with_content() -> None:
    """A list's version is a content hash, so an edited list gets a new version."""
    a = parse_list("genders", b"code,label\nM,Male\n", "a.csv")
    b = parse_list("genders", b"code,label\nM,Male\nF,Female\n", "b.csv")
    assert a.version != b.version


def test_bad_list_names_file_and_line(tmp_path: Path) -> None:
    """A broken list raises an error naming the file and the line."""
    with pytest.raises(MasterDataError, match=r"x\.csv, line 3: empty code"):
        parse_list("genders", b"code,label\nM,Male\n,Nobody\n", "x.csv")
    with pytest.raises(MasterDataError, match="missing"):
        load_master_data(tmp_path)
