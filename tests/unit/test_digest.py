"""The one file digest: sha256 of the bytes, a symbolic link followed only when asked."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from pipeline.core.digest import file_sha256


def test_digest_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"\r\n tail"  # several read blocks; bytes kept as they are
    path = tmp_path / "input.csv"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this platform")
def test_a_symbolic_link_is_not_followed_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "outside.csv"
    target.write_bytes(b"id_number\n784198090000005\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with pytest.raises(OSError) as caught:
        file_sha256(link)
    assert caught.value.errno == errno.ELOOP
    assert file_sha256(link, follow_symlinks=True) == file_sha256(target)


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "gone.csv")
